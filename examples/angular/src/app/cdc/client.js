// The daemon's browser client, used as is: this file only re-exports cdc/static/client.js (the
// file the daemon serves at /client.js), so the app never drifts from it. In your own app, copy
// cdc/static/client.js here instead (see README.md).
export * from '../../../../../cdc/static/client.js';
export { default } from '../../../../../cdc/static/client.js';
