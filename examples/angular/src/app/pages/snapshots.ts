import { Component, DestroyRef, computed, inject, signal } from '@angular/core';
import { JsonPipe } from '@angular/common';

import { WebSocketService, type SnapshotEvent } from '../cdc/websocket.service';
import { time } from './format';

/** Snapshots (checkpoints, backups) as they are created, finished, fail or get deleted. */
@Component({
  selector: 'app-snapshots',
  imports: [JsonPipe],
  template: `
    <h1>Snapshots</h1>
    <table id="snapshots">
      <thead><tr><th>name</th><th>status</th><th>details</th><th>updated</th></tr></thead>
      <tbody>
        @for (s of list(); track s.name) {
          <tr [attr.data-name]="s.name" [attr.data-status]="s.status">
            <td>{{ s.name }}</td><td class="status">{{ s.status }}</td><td class="details"><code>{{ s.details | json }}</code></td><td>{{ t(s.timestamp) }}</td>
          </tr>
        }
      </tbody>
    </table>
  `,
})
export class SnapshotsPage {
  private readonly ws = inject(WebSocketService);
  private readonly byName = signal<ReadonlyMap<string, SnapshotEvent>>(new Map());
  protected readonly list = computed(() => [...this.byName().values()].sort((a, b) => b.id - a.id));
  protected readonly t = time;

  constructor() {
    const sub = this.ws.onSnapshotEvents().subscribe((ev) =>
      this.byName.update((m) => new Map(m).set(ev.name, ev)),
    );
    inject(DestroyRef).onDestroy(() => sub.unsubscribe());
  }
}
