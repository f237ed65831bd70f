import type { CdcConfig } from './websocket.service';

const KEY = 'cdc-base';

/**
 * Where the daemon is, decided at runtime: `?cdc=http://host:port` in the address (kept for the
 * tab in sessionStorage), else the page's own origin (the app served behind the same host as
 * the daemon). A daemon on another origin must list this app's origin: `--allow-origin`.
 */
export function cdcConfigFromLocation(): CdcConfig {
  const fromQuery = new URLSearchParams(location.search).get('cdc');
  if (fromQuery) sessionStorage.setItem(KEY, fromQuery);
  const base = fromQuery ?? sessionStorage.getItem(KEY) ?? location.origin;
  return { base: base.replace(/\/+$/, '') };
}
