//! Typed indices for nodes, groups and resources, and the tables they index.
//!
//! The engine keeps its state in vectors parallel to the model's, so a node's
//! index, a group's and a resource's are all plain positions. Giving each its
//! own type means a group index can never be used to look up a resource: the
//! compiler refuses it. The conversions from and to `usize` stay private to
//! this crate, and no index ever leaves it (the public API speaks names).

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Index, IndexMut};

/// A position in one kind of [`Table`].
pub(crate) trait TableIndex: Copy {
    fn from_position(position: usize) -> Self;
    fn position(self) -> usize;
}

macro_rules! table_index {
    ($($(#[$doc:meta])+ $name:ident),* $(,)?) => {$(
        $(#[$doc])+
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub(crate) struct $name(usize);

        impl TableIndex for $name {
            fn from_position(position: usize) -> Self {
                $name(position)
            }
            fn position(self) -> usize {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    )*};
}

table_index!(
    /// A node's position in the configuration's node list.
    NodeIx,
    /// A group's position in the configuration's group list.
    GroupIx,
    /// A resource's position among every resource of the cluster, groups in
    /// configuration order.
    ResourceIx,
);

/// A vector indexed by one kind of index only.
pub(crate) struct Table<I, T> {
    items: Vec<T>,
    index: PhantomData<fn(I) -> I>,
}

impl<I: TableIndex, T> Table<I, T> {
    pub(crate) fn new() -> Self {
        Table {
            items: Vec::new(),
            index: PhantomData,
        }
    }

    /// A table of `len` copies of `item`.
    pub(crate) fn filled(item: T, len: usize) -> Self
    where
        T: Clone,
    {
        vec![item; len].into_iter().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Appends `item` and returns its index.
    pub(crate) fn push(&mut self, item: T) -> I {
        self.items.push(item);
        I::from_position(self.items.len() - 1)
    }

    /// Every index, in order.
    pub(crate) fn indices(&self) -> impl DoubleEndedIterator<Item = I> + use<I, T> {
        (0..self.items.len()).map(I::from_position)
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    /// Every item with its index, in order.
    pub(crate) fn iter_indexed(&self) -> impl Iterator<Item = (I, &T)> {
        self.items
            .iter()
            .enumerate()
            .map(|(position, item)| (I::from_position(position), item))
    }
}

impl<I, T: Clone> Clone for Table<I, T> {
    fn clone(&self) -> Self {
        Table {
            items: self.items.clone(),
            index: PhantomData,
        }
    }
}

impl<I, T: fmt::Debug> fmt::Debug for Table<I, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.items.fmt(f)
    }
}

impl<I, T> FromIterator<T> for Table<I, T> {
    fn from_iter<It: IntoIterator<Item = T>>(items: It) -> Self {
        Table {
            items: items.into_iter().collect(),
            index: PhantomData,
        }
    }
}

impl<I: TableIndex, T> Index<I> for Table<I, T> {
    type Output = T;
    fn index(&self, index: I) -> &T {
        &self.items[index.position()]
    }
}

impl<I: TableIndex, T> IndexMut<I> for Table<I, T> {
    fn index_mut(&mut self, index: I) -> &mut T {
        &mut self.items[index.position()]
    }
}
