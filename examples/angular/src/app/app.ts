import { Component, effect, inject } from '@angular/core';
import { Router, RouterLink, RouterLinkActive, RouterOutlet } from '@angular/router';

import { AuthService } from './auth.service';
import { WebSocketService } from './cdc/websocket.service';

@Component({
  selector: 'app-root',
  imports: [RouterOutlet, RouterLink, RouterLinkActive],
  template: `
    <header>
      <strong class="brand">cdc</strong>
      <nav>
        <a routerLink="/" routerLinkActive="on" [routerLinkActiveOptions]="{ exact: true }" id="nav-dashboard">Dashboard</a>
        <a routerLink="/keys" routerLinkActive="on" id="nav-keys">Key Explorer</a>
        <a routerLink="/compaction" routerLinkActive="on" id="nav-compaction">Compaction</a>
        <a routerLink="/health" routerLinkActive="on" id="nav-health">Health</a>
        <a routerLink="/snapshots" routerLinkActive="on" id="nav-snapshots">Snapshots</a>
      </nav>
      <span class="spacer"></span>
      <span id="status" class="badge" [attr.data-status]="ws.status()">{{ ws.status() }}</span>
      <span class="muted" id="daemon">{{ ws.base }}</span>
      @if (auth.token()) {
        <button id="logout" type="button" (click)="auth.logout()">Log out</button>
      } @else {
        <a routerLink="/login" id="nav-login">Sign in</a>
      }
    </header>
    <main><router-outlet /></main>
  `,
})
export class App {
  protected readonly ws = inject(WebSocketService);
  protected readonly auth = inject(AuthService);
  private readonly router = inject(Router);

  constructor() {
    // No token, or the daemon just refused it: go to the sign-in page. (After a refusal the
    // status stays "unauthorized" until the next connection says hello: not a new refusal.)
    let previous: string | null = null;
    effect(() => {
      const status = this.ws.status();
      const refused = status === 'unauthorized' && previous !== 'unauthorized';
      previous = status;
      if (!this.auth.token() || refused) void this.router.navigate(['/login']);
    });
  }
}
