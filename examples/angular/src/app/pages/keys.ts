import { Component, DestroyRef, computed, inject, signal } from '@angular/core';

import { WebSocketService, type KeyChangeEvent } from '../cdc/websocket.service';
import { time } from './format';

const ORIGIN_KEY = 'cdc-my-origin';
const WATCH_KEY = 'cdc-watched-keys';

interface Row {
  ev: KeyChangeEvent;
  foreign: boolean;
}

/**
 * Watch keys; a change whose `origin` (the writer's `cdc-origin:` LogData tag) is not this
 * app's is flagged: another client modified the key.
 */
@Component({
  selector: 'app-keys',
  template: `
    <h1>Key Explorer</h1>
    <form id="watch" (submit)="$event.preventDefault(); watch(key, prefix)">
      <label>key <input #key id="watch-key" name="key" placeholder="user:42" /></label>
      <label><input #prefix id="watch-prefix" name="prefix" type="checkbox" /> prefix</label>
      <button type="submit">Watch</button>
      <label class="gap">my origin <input #origin id="my-origin" name="origin" [value]="myOrigin()" (input)="setOrigin(origin.value)" /></label>
    </form>
    <ul id="watched" class="chips">
      @for (w of watched(); track w.key + w.prefix) {
        <li [attr.data-key]="w.key">{{ w.key }}{{ w.prefix ? '*' : '' }} <button type="button" (click)="unwatch(w.key)">×</button></li>
      }
    </ul>
    <p class="muted"><span id="foreign-count">{{ foreignCount() }}</span> change(s) by another writer</p>
    <table id="changes">
      <thead><tr><th>id</th><th>time</th><th>op</th><th>cf</th><th>key</th><th>seq</th><th>origin</th><th></th></tr></thead>
      <tbody>
        @for (r of rows(); track r.ev.id) {
          <tr [class.foreign]="r.foreign" [attr.data-key]="r.ev.key">
            <td>{{ r.ev.id }}</td><td>{{ t(r.ev.timestamp) }}</td><td>{{ r.ev.operation }}</td><td>{{ r.ev.cf }}</td>
            <td>{{ r.ev.key }}</td><td>{{ r.ev.seq }}</td><td class="origin">{{ r.ev.origin ?? '–' }}</td>
            <td class="flag">@if (r.foreign) { ⚑ changed by {{ r.ev.origin ? 'another client' : 'an untagged writer' }} }</td>
          </tr>
        }
      </tbody>
    </table>
  `,
})
export class KeysPage {
  private readonly ws = inject(WebSocketService);
  protected readonly myOrigin = signal(localStorage.getItem(ORIGIN_KEY) ?? 'angular-app');
  protected readonly watched = signal<{ key: string; prefix: boolean }[]>(
    JSON.parse(localStorage.getItem(WATCH_KEY) ?? '[]'),
  );
  private readonly changes = signal<KeyChangeEvent[]>([]);
  protected readonly rows = computed<Row[]>(() =>
    this.changes().map((ev) => ({ ev, foreign: (ev.origin ?? null) !== this.myOrigin() })),
  );
  protected readonly foreignCount = computed(() => this.rows().filter((r) => r.foreign).length);
  protected readonly t = time;

  constructor() {
    const sub = this.ws.onKeyChanges().subscribe((ev) => {
      const hit = this.watched().some((w) => (w.prefix ? ev.key.startsWith(w.key) : ev.key === w.key));
      if (hit) this.changes.update((list) => [ev, ...list.slice(0, 199)]);
    });
    inject(DestroyRef).onDestroy(() => sub.unsubscribe());
  }

  watch(keyInput: HTMLInputElement, prefixInput: HTMLInputElement): void {
    const key = keyInput.value.trim();
    if (!key) return;
    this.watched.update((w) => [...w.filter((x) => x.key !== key), { key, prefix: prefixInput.checked }]);
    localStorage.setItem(WATCH_KEY, JSON.stringify(this.watched()));
    keyInput.value = '';
  }

  unwatch(key: string): void {
    this.watched.update((w) => w.filter((x) => x.key !== key));
    localStorage.setItem(WATCH_KEY, JSON.stringify(this.watched()));
  }

  setOrigin(origin: string): void {
    this.myOrigin.set(origin);
    localStorage.setItem(ORIGIN_KEY, origin);
  }
}
