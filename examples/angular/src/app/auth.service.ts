import { Injectable, signal } from '@angular/core';

const KEY = 'cdc-token';

/**
 * The app's login state: the token the user entered, kept for this tab only (sessionStorage).
 * WebSocketService follows it through CDC_AUTH_TOKEN (see app.config.ts).
 */
@Injectable({ providedIn: 'root' })
export class AuthService {
  private readonly _token = signal<string | null>(sessionStorage.getItem(KEY));
  readonly token = this._token.asReadonly();

  /** Sign in (or re-enter a token after `unauthorized`): the service connects. */
  login(token: string): void {
    sessionStorage.setItem(KEY, token);
    this._token.set(null); // the same token again after `unauthorized` still counts as a new login
    this._token.set(token);
  }

  /** A refreshed token: sent in-band on the open connection, no reconnect. */
  refresh(token: string): void {
    sessionStorage.setItem(KEY, token);
    this._token.set(token);
  }

  /** Sign out: the service disconnects. */
  logout(): void {
    sessionStorage.removeItem(KEY);
    this._token.set(null);
  }
}
