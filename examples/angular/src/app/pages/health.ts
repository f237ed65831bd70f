import { Component, DestroyRef, effect, inject, signal, untracked } from '@angular/core';

import { WebSocketService, type HealthEvent } from '../cdc/websocket.service';
import { time } from './format';

interface ProbeState {
  status: 'healthy' | 'unhealthy' | 'unknown';
  reason: string;
  since: number | null;
  source: 'event' | 'http' | 'none';
}

const PROBES = [
  ['liveness', '/health/live'],
  ['readiness', '/health/ready'],
  ['startup', '/health/startup'],
] as const;

/**
 * Probe status, changed the instant a `health_change` event arrives. The starting state comes
 * from GET /health/* (readable cross-origin only when the daemon lists this origin in
 * --allow-origin); without it the probes stay "unknown" until their next change.
 */
@Component({
  selector: 'app-health',
  template: `
    <h1>Health</h1>
    <section id="probes" class="cards">
      @for (p of names; track p) {
        <div class="card probe" [attr.data-probe]="p" [attr.data-status]="probes()[p].status">
          <span class="label">{{ p }}</span>
          <span class="big status">{{ probes()[p].status }}</span>
          <span class="reason">{{ probes()[p].reason }}</span>
          <span class="muted">{{ probes()[p].source === 'event' ? 'changed ' + t(probes()[p].since) : probes()[p].source === 'http' ? 'from GET /health' : 'no data yet' }}</span>
        </div>
      }
    </section>
    <p id="health-http" class="muted">GET /health/*: {{ http() }}</p>
    <h2>Changes</h2>
    <ul id="health-log" class="feed">
      @for (ev of log(); track ev.id) {
        <li [attr.data-probe]="ev.probe" [class.bad]="ev.status === 'unhealthy'">{{ t(ev.timestamp) }} {{ ev.probe }} → <b>{{ ev.status }}</b> {{ ev.reason }}</li>
      }
    </ul>
  `,
})
export class HealthPage {
  private readonly ws = inject(WebSocketService);
  protected readonly names = PROBES.map(([p]) => p);
  protected readonly probes = signal<Record<string, ProbeState>>(
    Object.fromEntries(this.names.map((p) => [p, { status: 'unknown', reason: '', since: null, source: 'none' }])),
  );
  protected readonly log = signal<HealthEvent[]>([]);
  protected readonly http = signal('not asked yet');
  protected readonly t = time;

  constructor() {
    const sub = this.ws.onHealthEvents().subscribe((ev) => {
      this.log.update((l) => [ev, ...l.slice(0, 99)]);
      this.probes.update((m) => ({ ...m, [ev.probe]: { status: ev.status, reason: ev.reason, since: ev.timestamp, source: 'event' } }));
    });
    inject(DestroyRef).onDestroy(() => sub.unsubscribe());
    // (Re)read the probes whenever the stream becomes live: events missed while away are replayed
    // by the client, but the starting state predates them.
    effect(() => {
      if (this.ws.live()) untracked(() => void this.fetchAll());
    });
  }

  private async fetchAll(): Promise<void> {
    const ok = await Promise.all(
      PROBES.map(async ([probe, path]) => {
        try {
          const r = await fetch(this.ws.base + path, { cache: 'no-store' });
          const body = (await r.json()) as { status: 'healthy' | 'unhealthy'; reason?: string };
          this.probes.update((m) =>
            m[probe].source === 'event' ? m : { ...m, [probe]: { status: body.status, reason: body.reason ?? '', since: null, source: 'http' } },
          );
          return true;
        } catch {
          return false; // cross-origin without --allow-origin, or the daemon is down: keep what events say
        }
      }),
    );
    this.http.set(
      ok.every(Boolean) ? 'read' : 'not readable (daemon down, or another origin not listed in its --allow-origin)',
    );
  }
}
