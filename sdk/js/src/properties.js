// Property schemas: each property of a type is declared once, as a
// `Property`, and both halves of the contract come from that one list:
// describe()'s property table (`Property.spec`) and the reading of a
// resource's values (`Props`), whose errors name the property and say why
// it was refused. The JavaScript twin of the Rust SDK's properties.rs.

/** The property kinds of the contract, as the bindings spell them. */
const KINDS = ['string', 'integer', 'boolean', 'duration-ms', 'address'];

/**
 * A property value refused by `validate` or `open`: the contract's
 * `property-error`. Throw it from `open`; the SDK hands it to the agent
 * as it is, so the operator reads which property and why.
 */
export class PropertyError extends Error {
  /** @param {string} property @param {string} reason */
  constructor(property, reason) {
    super(`property ${property}: ${reason}`);
    this.name = 'PropertyError';
    this.property = property;
    this.reason = reason;
  }
}

/** A `PropertyError` for `property` (the Rust SDK's `refuse`). */
export function refuse(property, reason) {
  return new PropertyError(property, reason);
}

/**
 * One entry of a type's schema: name, kind, default and the help text
 * operators see (`warden plugin check`). Without a default it is required.
 * Immutable: `withDefault` returns a new one, so a schema can be shared.
 */
export class Property {
  /**
   * @param {string} name 1 to 64 characters of a-z, 0-9 and -
   * @param {string} kind one of the contract's property kinds
   * @param {string} description one line of help for operators
   * @param {string | undefined} defaultValue the value when unset; none: required
   */
  constructor(name, kind, description, defaultValue = undefined) {
    if (!KINDS.includes(kind)) {
      throw new TypeError(`property ${name}: kind ${JSON.stringify(kind)} is not one of ${KINDS.join(', ')}`);
    }
    if (defaultValue !== undefined && typeof defaultValue !== 'string') {
      throw new TypeError(`property ${name}: a default is text, as the schema writes it (got ${typeof defaultValue})`);
    }
    this.name = name;
    this.kind = kind;
    this.description = description;
    this.defaultValue = defaultValue;
    Object.freeze(this);
  }

  /** The same property with a default, which makes it optional. */
  default(value) {
    return new Property(this.name, this.kind, this.description, String(value));
  }

  /** Whether a resource must set it: it has no default. */
  get required() {
    return this.defaultValue === undefined;
  }

  /** The entry of describe()'s property table, as the bindings want it. */
  spec() {
    return {
      name: this.name,
      kind: this.kind,
      defaultValue: this.defaultValue,
      required: this.required,
      description: this.description,
    };
  }
}

/** The constructors of `Property`, one per kind. */
export const property = Object.freeze({
  /** Text; read it with `Props.string`. */
  string: (name, description) => new Property(name, 'string', description),
  /** A whole number; read it with `Props.integer`. */
  integer: (name, description) => new Property(name, 'integer', description),
  /** `true` or `false`; read it with `Props.bool`. */
  boolean: (name, description) => new Property(name, 'boolean', description),
  /** Milliseconds; read it with `Props.duration`. */
  durationMs: (name, description) => new Property(name, 'duration-ms', description),
  /**
   * A TCP address, `host:port`. Declaring it is what lets the plugin's
   * checks reach it: the agent allows only the addresses in properties of
   * this kind. Read it with `Props.address`.
   */
  address: (name, description) => new Property(name, 'address', description),
});

/** How a kind reads in an error. */
function kindName(kind) {
  return {
    string: 'a string',
    integer: 'an integer',
    boolean: 'a boolean',
    'duration-ms': 'a duration in milliseconds',
    address: 'an address',
  }[kind];
}

/** The refusal of a required property without a value. */
function required(declared) {
  let what = declared.description;
  // "Where it listens" reads "required: where it listens", but an acronym
  // ("TCP port") keeps its case.
  if (what.length > 1 && what[1] === what[1].toLowerCase()) {
    what = what[0].toLowerCase() + what.slice(1);
  }
  return refuse(declared.name, `required: ${what}`);
}

/**
 * A resource's values (`[name, value]` pairs, as the contract passes
 * them) read through its type's schema. A value not set is the schema's
 * default. Every getter throws a `PropertyError` naming the property.
 */
export class Props {
  /** @param {Array<[string, string]>} values @param {Property[]} schema */
  constructor(values, schema) {
    this.values = values;
    this.schema = schema;
  }

  /** The declaration of `name` and its text (set, else the default). */
  lookup(name) {
    const declared = this.schema.find((p) => p.name === name);
    if (!declared) {
      throw refuse(name, 'the type reads a property its schema does not declare (a bug in the type)');
    }
    const set = this.values.find(([key]) => key === name);
    return { declared, value: set ? set[1] : declared.defaultValue };
  }

  /** The text of a property of one of the `kinds`, empty meaning unset. */
  typed(name, kinds, asWhat) {
    const { declared, value } = this.lookup(name);
    if (!kinds.includes(declared.kind)) {
      throw refuse(name, `the type reads it as ${asWhat}, but declares it ${kindName(declared.kind)} (a bug in the type)`);
    }
    if (value) return value;
    if (declared.defaultValue) return declared.defaultValue;
    throw required(declared);
  }

  /** The text of a property, whatever its kind. Required and empty: refused. */
  get(name) {
    const { declared, value } = this.lookup(name);
    if (value === undefined || (value === '' && declared.required)) throw required(declared);
    return value;
  }

  /** `get`, under the name the other getters share. */
  string(name) {
    return this.get(name);
  }

  /** A whole number (kind integer or duration-ms), as a JS number. */
  integer(name) {
    const text = this.typed(name, ['integer', 'duration-ms'], 'a whole number');
    if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(Number(text))) {
      throw refuse(name, `expected a whole number, got ${JSON.stringify(text)}`);
    }
    return Number(text);
  }

  /** A duration in milliseconds (kind duration-ms), as a JS number. */
  duration(name) {
    const text = this.typed(name, ['duration-ms'], 'a duration');
    if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(Number(text))) {
      throw refuse(name, `expected a number of milliseconds, got ${JSON.stringify(text)}`);
    }
    return Number(text);
  }

  /** `true` or `false` (kind boolean). */
  bool(name) {
    const text = this.typed(name, ['boolean'], 'a boolean');
    if (text === 'true') return true;
    if (text === 'false') return false;
    throw refuse(name, `expected true or false, got ${JSON.stringify(text)}`);
  }

  /** A `host:port` address (kind address); the port 0 to 65535. */
  address(name) {
    const text = this.typed(name, ['address'], 'an address');
    const colon = text.lastIndexOf(':');
    const host = colon > 0 ? text.slice(0, colon) : '';
    const port = colon > 0 ? text.slice(colon + 1) : '';
    if (!host || !/^[0-9]{1,5}$/.test(port) || Number(port) > 65535) {
      throw refuse(name, `expected host:port, got ${JSON.stringify(text)}`);
    }
    return text;
  }
}
