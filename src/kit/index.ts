/** What drivers share: the wording of common errors, id order, stored capabilities, and the wake-up for wait loops. */
export { parseCapabilities } from './capabilities.js';
export { compareIds } from './ids.js';
export {
  connectionClosed,
  groupExists,
  groupNotEmpty,
  groupNotFound,
  limitMismatch,
  memberExists,
  memberNotJoined,
  sessionGone,
} from './messages.js';
export { Wakeup } from './wakeup.js';
