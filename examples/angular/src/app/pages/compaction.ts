import { Component, DestroyRef, computed, inject, signal } from '@angular/core';

import { WebSocketService, type CompactionEvent, type FlushEvent } from '../cdc/websocket.service';
import { bytes, time } from './format';

interface Job {
  id: string;
  kind: 'compaction' | 'flush';
  cf: string;
  job: number | null;
  status: string;
  progress: number | null;
  trivial: boolean;
  ev: CompactionEvent | FlushEvent;
  updated: number;
}

/** Compactions and flushes as they run: status, progress, bytes; trivial moves say so. */
@Component({
  selector: 'app-compaction',
  template: `
    <h1>Compaction</h1>
    <p class="muted"><span id="running">{{ running() }}</span> running</p>
    <table id="jobs">
      <thead><tr><th>job</th><th>cf</th><th>status</th><th>progress</th><th>what</th><th>updated</th></tr></thead>
      <tbody>
        @for (j of jobs(); track j.id) {
          <tr [attr.data-job]="j.id" [attr.data-status]="j.status" [class.trivial]="j.trivial">
            <td>{{ j.kind }} {{ j.job ?? '?' }}</td><td>{{ j.cf }}</td><td class="status">{{ j.status }}</td>
            <td><div class="progress"><div class="bar"><div [style.width.%]="j.progress ?? (j.status === 'completed' ? 100 : 0)"></div></div>
              @if (j.status === 'running' && j.progress !== null) { <span class="pct">{{ j.progress.toFixed(0) }}%</span> }</div></td>
            <td class="what">{{ describe(j) }}</td><td>{{ t(j.updated) }}</td>
          </tr>
        }
      </tbody>
    </table>
  `,
})
export class CompactionPage {
  private readonly ws = inject(WebSocketService);
  private readonly byId = signal<ReadonlyMap<string, Job>>(new Map());
  protected readonly jobs = computed(() => [...this.byId().values()].sort((a, b) => b.ev.id - a.ev.id));
  protected readonly running = computed(() => this.jobs().filter((j) => j.status === 'started' || j.status === 'running').length);
  protected readonly t = time;

  constructor() {
    const subs = [
      this.ws.onCompactionEvents().subscribe((ev) => this.track('compaction', ev)),
      this.ws.onFlushEvents().subscribe((ev) => this.track('flush', ev)),
    ];
    inject(DestroyRef).onDestroy(() => subs.forEach((s) => s.unsubscribe()));
  }

  private track(kind: Job['kind'], ev: CompactionEvent | FlushEvent): void {
    const job = ev.job ?? (typeof ev.details.job === 'number' ? ev.details.job : null);
    const id = `${kind}:${ev.cf}:${job ?? ev.id}`;
    this.byId.update((m) => {
      const next = new Map(m);
      const prev = next.get(id);
      const progress = typeof ev.details.progress === 'number' ? ev.details.progress : prev?.progress ?? null;
      next.set(id, {
        id, kind, cf: ev.cf, job, status: ev.status, ev, updated: ev.timestamp,
        progress: ev.status === 'completed' ? 100 : progress,
        trivial: ev.details.trivial_move === true || (prev?.trivial ?? false),
      });
      return next;
    });
  }

  protected describe(j: Job): string {
    const d = j.ev.details;
    if (j.trivial) return `trivial move: files moved to L${d.output_level ?? d['destination_level'] ?? '?'}, nothing rewritten`;
    const parts: string[] = [];
    if (d.compaction_reason) parts.push(String(d.compaction_reason));
    if (d.output_level !== undefined) parts.push(`→ L${d.output_level}`);
    if (d.input_bytes !== undefined) parts.push(`in ${bytes(d.input_bytes)}`);
    if (d.bytes_written !== undefined) parts.push(`written ${bytes(d.bytes_written)}`);
    if (d.output_bytes !== undefined) parts.push(`out ${bytes(d.output_bytes)}`);
    if (d.duration_ms !== undefined) parts.push(`${Math.round(d.duration_ms)} ms`);
    if (j.status === 'failed' && d.reason) parts.push(String(d.reason));
    return parts.join(', ');
  }
}
