'use strict';
// Code-first declarations, the Node side of Python's @function(...): what functions.yaml
// says about a function (routes, scaling, resources, schedule, retry, timeout_s, batch...),
// next to the handler. functl list/render/deploy PATH read the `kubefuncs` property of the
// exported functions (functl/nodedecl.py) against functions.schema.json; functions.yaml
// entries override it field by field. The runtime itself ignores it.
//
//   exports.take = declare({ name: 'take-order', topic: 'orders', routes: ['/orders/'] },
//                          async (payload) => ({ took: payload }));
//
// A source function needs no import for it: `handler.kubefuncs = {...}` is the same.

function declare(options, handler) {
  if (typeof handler !== 'function') {
    throw new TypeError('declare(options, handler): handler must be a function');
  }
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError('declare(options, handler): options must be an object of functions.yaml fields');
  }
  handler.kubefuncs = JSON.parse(JSON.stringify(options)); // plain data, detached
  return handler;
}

module.exports = { declare };
