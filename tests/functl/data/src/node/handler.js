'use strict';
const leftPad = require('left-pad');

module.exports.handle = async (payload) => leftPad(String(payload), 8);
