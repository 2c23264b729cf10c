//! Filling `/data`, one WASI path at a time: the `disk` control code.
//!
//! The payload is `HOW NAME SIZE [COUNT]` (NAME relative to `/data`):
//!
//! | HOW         | what it does                                            | WASI calls |
//! |-------------|---------------------------------------------------------|------------|
//! | `write`     | one write of SIZE bytes into NAME                       | `open-at` create, `descriptor.write` |
//! | `stream`    | SIZE bytes into NAME through a stream, 4 KiB at a time  | `write-via-stream`, `blocking-write-and-flush` |
//! | `append`    | SIZE bytes appended to NAME through a stream            | `append-via-stream` |
//! | `std`       | SIZE bytes into NAME with `std::fs::File::write_all`    | what wasi-libc does |
//! | `rewrite`   | `std::fs::write` of SIZE bytes to NAME, COUNT times     | create + truncate + stream |
//! | `files`     | COUNT files NAME-i of SIZE bytes each (`std::fs::write`) | |
//! | `grow`      | NAME made SIZE bytes long without writing (sparse)       | `set-size` |
//! | `dirs`      | COUNT directories NAME-i                                 | `create-directory-at` |
//! | `symlinks`  | COUNT links NAME-i to a target SIZE characters long      | `symlink-at` |
//! | `hardlinks` | COUNT hard links NAME-i to one empty file NAME           | `link-at` |
//! | `remove`    | NAME removed (a file, or a directory and all in it)      | `unlink-file-at`, `remove-directory-at` |
//!
//! The answer says how much was done; an error names the WASI error code
//! (or, through std, the `io::ErrorKind`) and how far it got.

use std::io::Write;

use wasip2::filesystem::preopens::get_directories;
use wasip2::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags, filesystem_error_code,
};
use wasip2::io::streams::{OutputStream, StreamError};

const CHUNK: usize = 4096;

pub fn attack(payload: &str) -> Result<String, String> {
    let mut words = payload.split_whitespace();
    let how = words.next().unwrap_or_default();
    let name = words.next().ok_or("expected HOW NAME SIZE [COUNT]")?;
    let size: u64 = number(words.next())?;
    let count: u64 = match words.next() {
        Some(count) => number(Some(count))?,
        None => 1,
    };
    let data = data_dir()?;
    match how {
        "write" => {
            let file = create(&data, name)?;
            let buffer = vec![7u8; usize::try_from(size).map_err(|e| e.to_string())?];
            let written = file
                .write(&buffer, 0)
                .map_err(|e| format!("write {name}: {e:?}"))?;
            Ok(format!("wrote {written} bytes"))
        }
        "stream" => {
            let file = create(&data, name)?;
            let out = file
                .write_via_stream(0)
                .map_err(|e| format!("write-via-stream {name}: {e:?}"))?;
            fill(&out, size).map(|n| format!("streamed {n} bytes"))
        }
        "append" => {
            let file = create(&data, name)?;
            let out = file
                .append_via_stream()
                .map_err(|e| format!("append-via-stream {name}: {e:?}"))?;
            fill(&out, size).map(|n| format!("appended {n} bytes"))
        }
        "std" => {
            let path = format!("/data/{name}");
            let mut file = std::fs::File::create(&path).map_err(|e| io(&path, 0, &e))?;
            let chunk = [7u8; 65536];
            let mut done = 0u64;
            while done < size {
                let n = (size - done).min(chunk.len() as u64) as usize;
                file.write_all(&chunk[..n])
                    .map_err(|e| io(&path, done, &e))?;
                done += n as u64;
            }
            file.flush().map_err(|e| io(&path, done, &e))?;
            Ok(format!("wrote {done} bytes"))
        }
        "rewrite" => {
            let path = format!("/data/{name}");
            let content = vec![7u8; usize::try_from(size).map_err(|e| e.to_string())?];
            for i in 0..count {
                std::fs::write(&path, &content).map_err(|e| io(&path, i, &e))?;
            }
            Ok(format!("rewrote {count} times"))
        }
        "files" => {
            let content = vec![7u8; usize::try_from(size).map_err(|e| e.to_string())?];
            for i in 0..count {
                let path = format!("/data/{name}-{i}");
                std::fs::write(&path, &content).map_err(|e| io(&path, i, &e))?;
            }
            Ok(format!("{count} files"))
        }
        "grow" => {
            let file = create(&data, name)?;
            file.set_size(size)
                .map_err(|e| format!("set-size {name} {size}: {e:?}"))?;
            Ok(format!("{name} is {size} bytes long"))
        }
        "dirs" => each(count, |i| data.create_directory_at(&format!("{name}-{i}")))
            .map(|()| format!("{count} directories")),
        "symlinks" => {
            let target = "x".repeat(usize::try_from(size).map_err(|e| e.to_string())?);
            each(count, |i| data.symlink_at(&target, &format!("{name}-{i}")))
                .map(|()| format!("{count} links"))
        }
        "hardlinks" => {
            create(&data, name)?;
            each(count, |i| {
                data.link_at(PathFlags::empty(), name, &data, &format!("{name}-{i}"))
            })
            .map(|()| format!("{count} links"))
        }
        "remove" => {
            let path = format!("/data/{name}");
            std::fs::remove_file(&path)
                .or_else(|_| std::fs::remove_dir_all(&path))
                .map_err(|e| io(&path, 0, &e))?;
            Ok(format!("removed {name}"))
        }
        other => Err(format!("unknown way to fill the disk {other:?}")),
    }
}

fn number(word: Option<&str>) -> Result<u64, String> {
    word.ok_or("expected HOW NAME SIZE [COUNT]")?
        .parse()
        .map_err(|_| "SIZE and COUNT are numbers".to_string())
}

/// The preopened `/data`.
fn data_dir() -> Result<Descriptor, String> {
    get_directories()
        .into_iter()
        .find(|(_, path)| path == "/data")
        .map(|(dir, _)| dir)
        .ok_or_else(|| "no /data preopened".to_string())
}

fn create(data: &Descriptor, name: &str) -> Result<Descriptor, String> {
    data.open_at(
        PathFlags::empty(),
        name,
        OpenFlags::CREATE,
        DescriptorFlags::READ | DescriptorFlags::WRITE,
    )
    .map_err(|e| format!("create {name}: {e:?}"))
}

/// Run `step` COUNT times; the first error says which step failed.
fn each(count: u64, mut step: impl FnMut(u64) -> Result<(), ErrorCode>) -> Result<(), String> {
    for i in 0..count {
        step(i).map_err(|e| format!("after {i}: {e:?}"))?;
    }
    Ok(())
}

/// Write `size` bytes through `out`, 4 KiB a call.
fn fill(out: &OutputStream, size: u64) -> Result<u64, String> {
    let chunk = [7u8; CHUNK];
    let mut done = 0u64;
    while done < size {
        let n = (size - done).min(CHUNK as u64) as usize;
        match out.blocking_write_and_flush(&chunk[..n]) {
            Ok(()) => done += n as u64,
            Err(StreamError::LastOperationFailed(e)) => {
                let code = filesystem_error_code(&e);
                return Err(format!("after {done} bytes: {code:?}"));
            }
            Err(StreamError::Closed) => return Err(format!("after {done} bytes: closed")),
        }
    }
    Ok(done)
}

fn io(path: &str, after: u64, e: &std::io::Error) -> String {
    format!("{path}: after {after}: {e} ({:?})", e.kind())
}
