// Types of ./client.js: re-exports cdc/static/cdc.d.ts (served by the daemon at /cdc.d.ts).
// In your own app, copy cdc/static/cdc.d.ts here as client.d.ts instead (see README.md).
export * from '../../../../../cdc/static/cdc';
export { default } from '../../../../../cdc/static/cdc';
