import { Component, DestroyRef, computed, inject, signal } from '@angular/core';
import { JsonPipe } from '@angular/common';

import { WebSocketService, type SnapshotEvent } from '../cdc/websocket.service';
import { bytes, time } from './format';

const SHOWN = new Set(['kind', 'files', 'bytes', 'sequence', 'column_families', 'path', 'manifest', 'sst_files']);

/** Snapshots (checkpoints, backups) as they are created, finished, fail or get deleted. */
@Component({
  selector: 'app-snapshots',
  imports: [JsonPipe],
  template: `
    <h1>Snapshots</h1>
    <table id="snapshots">
      <thead><tr><th>name</th><th>status</th><th>kind</th><th>files</th><th>size</th><th>sequence</th><th>column families</th><th>other</th><th>updated</th></tr></thead>
      <tbody>
        @for (s of list(); track s.name) {
          <tr [attr.data-name]="s.name" [attr.data-status]="s.status">
            <td class="name">{{ s.name }}</td><td class="status">{{ s.status }}</td><td>{{ s.details['kind'] ?? '' }}</td>
            <td>{{ s.details['files'] ?? '' }}</td><td>{{ fmt(num(s.details['bytes'])) }}</td><td>{{ s.details['sequence'] ?? '' }}</td>
            <td>{{ joined(s.details['column_families']) }}</td><td class="details"><code>{{ rest(s.details) | json }}</code></td><td>{{ t(s.timestamp) }}</td>
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
  protected readonly fmt = bytes;

  protected num(v: unknown): number | null {
    return typeof v === 'number' ? v : null;
  }

  protected joined(v: unknown): string {
    return Array.isArray(v) ? v.join(', ') : '';
  }

  /** Details not shown in their own column (a failure's reason, a backup's id, ...). */
  protected rest(d: Record<string, unknown>): Record<string, unknown> | string {
    const out = Object.fromEntries(Object.entries(d).filter(([k]) => !SHOWN.has(k)));
    return Object.keys(out).length ? out : '';
  }

  constructor() {
    const sub = this.ws.onSnapshotEvents().subscribe((ev) =>
      this.byName.update((m) => new Map(m).set(ev.name, ev)),
    );
    inject(DestroyRef).onDestroy(() => sub.unsubscribe());
  }
}
