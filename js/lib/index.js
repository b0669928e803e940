'use strict';
// meshdcm for Node.js: the public API. A node author needs Node, parseFilter and the errors.
const { Node, Message } = require('./node');
const { parseFilter } = require('./filter');
const codec = require('./codec');
const errors = require('./errors');

module.exports = { Node, Message, parseFilter, codec, ...errors };
