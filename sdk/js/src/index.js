// The SDK for Warden resource types written in JavaScript, built into
// components with componentize-js against the contract's world `plugin`.
// Import what a type needs from here; the checks over the `probe` import
// are in ./checks.js (a type that makes none does not link the import).

export { CONTRACT_VERSION, checkpoint, log, nowMs, sleepMs, reportProgress, spawn, stop, processState } from './contract.js';
export { Property, PropertyError, Props, property, refuse } from './properties.js';
export { DEFAULT_STOP_GRACE_MS, Service, describeState, expand, reasonOf, serviceProperties, splitArgs } from './service.js';
export { DEFAULT_TIMING, exportService, exportType, unknownControl } from './resource.js';
