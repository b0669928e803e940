'use strict';
// The errors a caller can meet (docs/protocol.md names the first two):
//   MeshError
//   ├── MalformedMessage   a frame or body that cannot be read
//   ├── VersionError       a frame of a major protocol version this library does not speak
//   ├── FilterSyntaxError  a filter that does not parse (column and what was expected)
//   ├── TransferError      a meshdcm:// fetch that failed (NOFILE, timeout, unknown node)
//   └── HandlerError       raised by a handler: the message cannot succeed as it is (dead letter at once)
class MeshError extends Error { get name() { return this.constructor.name; } }
class MalformedMessage extends MeshError {}
class VersionError extends MeshError {}
class TransferError extends MeshError {}
class HandlerError extends MeshError {
  constructor(message, { retry = false, action = '' } = {}) { super(message); this.retry = retry; this.action = action; }
}
class FilterSyntaxError extends MeshError {
  constructor(text, column, expected, found) {
    super(`filter syntax error at column ${column}: expected ${expected}${found ? `, found ${found}` : ''}\n  ${text}\n  ${' '.repeat(column - 1)}^`);
    this.column = column;
  }
}
module.exports = { MeshError, MalformedMessage, VersionError, TransferError, HandlerError, FilterSyntaxError };
