import { Component, computed, inject } from '@angular/core';
import { Router } from '@angular/router';

import { AuthService } from '../auth.service';
import { WebSocketService } from '../cdc/websocket.service';

/**
 * Token entry. The service connects as soon as a token is set and says when the daemon refuses
 * it; once signed in, a new token (e.g. a refreshed JWT) is handed over in-band, no reconnect.
 */
@Component({
  selector: 'app-login',
  template: `
    <h1>Sign in</h1>
    @if (signedIn()) {
      <p>Signed in ({{ ws.status() }}).</p>
      <form id="refresh" (submit)="$event.preventDefault(); refresh(next)">
        <label>refreshed token <input #next id="refresh-input" name="refresh" type="password" autocomplete="off" /></label>
        <button type="submit">Use it (no reconnect)</button>
      </form>
    } @else {
      <form id="login" (submit)="$event.preventDefault(); submit(token)">
        <label>cdc token <input #token id="token-input" name="token" type="password" autocomplete="off" /></label>
        <button type="submit">Connect</button>
      </form>
    }
    @if (refused()) {
      <p id="login-err" class="bad">The daemon refused this token (unauthorized). Enter another one.</p>
    }
    <p class="muted">Daemon: <code>{{ ws.base }}</code> (change with <code>?cdc=http://host:port</code>).</p>
  `,
})
export class LoginPage {
  protected readonly ws = inject(WebSocketService);
  private readonly auth = inject(AuthService);
  private readonly router = inject(Router);
  protected readonly refused = computed(() => this.ws.status() === 'unauthorized');
  protected readonly signedIn = computed(() => !!this.auth.token() && !this.refused());

  submit(input: HTMLInputElement): void {
    const t = input.value.trim();
    if (!t) return;
    this.auth.login(t);
    void this.router.navigate(['/']);
  }

  refresh(input: HTMLInputElement): void {
    const t = input.value.trim();
    if (!t) return;
    this.auth.refresh(t);
    input.value = '';
  }
}
