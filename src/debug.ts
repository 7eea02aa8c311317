import { debuglog } from 'node:util';

/** `NODE_DEBUG=concord` prints the session machine, locks and watches. */
export const debug = debuglog('concord');
