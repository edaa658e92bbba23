// Resolve hook for ES-module source functions: Node's ESM resolver ignores NODE_PATH, where
// functl's init container (and functl dev) put a function's package.json dependencies. A
// bare specifier the normal lookup cannot find is looked up in each NODE_PATH folder too, as
// require() does for CommonJS handlers. Registered by function.js only when it imports one.
import path from 'node:path';
import { pathToFileURL } from 'node:url';

let folders = [];

export async function initialize(data) {
  folders = data.folders;
}

const isBare = (specifier) => !/^(\.{0,2}\/|[a-z][a-z0-9+.-]*:)/i.test(specifier);

export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (error) {
    if (error.code !== 'ERR_MODULE_NOT_FOUND' || !isBare(specifier)) throw error;
    for (const folder of folders) {
      // a parent inside the folder makes the lookup start at <folder>/node_modules, then <folder>
      const parentURL = pathToFileURL(path.join(folder, '.kubefuncs-resolve.mjs')).href;
      try {
        return await next(specifier, { ...context, parentURL });
      } catch {
        // not in this folder: the next one
      }
    }
    throw error;
  }
}
