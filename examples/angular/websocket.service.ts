/**
 * Angular WebSocketService for cdc (the seed's API), wrapping the dependency-free CdcClient.
 *
 * Drop-in: copy `cdc/static/client.js` and `cdc/static/cdc.d.ts` into your app (or load
 * `/client.js` from the daemon) and map the module name in tsconfig.json:
 *     "paths": { "@cdc/client": ["src/app/cdc/cdc.d.ts"] }   (and alias the bundler to client.js)
 *
 * Invariants:
 * - One CdcClient per service (providedIn: 'root'); it runs outside the Angular zone so that
 *   heartbeats and reconnect timers do not trigger change detection. Every emission is
 *   re-entered into the zone, so templates update.
 * - events$ delivers each event once, in id order; reconnects resume from the last id (no loss,
 *   no duplicate); connectionStatus$ replays the current status to new subscribers.
 */
import { Injectable, InjectionToken, NgZone, OnDestroy, inject } from '@angular/core';
import { Observable, defer, from, filter, map, distinctUntilChanged } from 'rxjs';
import {
  CdcClient,
  type CdcClientOptions,
  type CdcStream,
  type CaptureGapEvent,
  type CompactionEvent,
  type ConnectionStatus,
  type ErrorFrame,
  type Filter,
  type FlushEvent,
  type HealthEvent,
  type KeyChangeEvent,
  type ResetFrame,
  type ServerEvent,
  type SnapshotEvent,
  type SyncEvent,
} from '@cdc/client';

export type {
  ServerEvent,
  KeyChangeEvent,
  CompactionEvent,
  FlushEvent,
  HealthEvent,
  SyncEvent,
  SnapshotEvent,
  ConnectionStatus,
} from '@cdc/client';

/** Optional options for the client (url, types, cf, prefix, since, values, batch, ...). */
export const CDC_CLIENT_OPTIONS = new InjectionToken<CdcClientOptions>('CDC_CLIENT_OPTIONS');

/** Re-enter the Angular zone for every notification of a stream that lives outside it. */
function inZone<T>(zone: NgZone, source: Observable<T>): Observable<T> {
  return new Observable<T>((subscriber) =>
    source.subscribe({
      next: (value) => zone.run(() => subscriber.next(value)),
      error: (err: unknown) => zone.run(() => subscriber.error(err)),
      complete: () => zone.run(() => subscriber.complete()),
    }),
  );
}

@Injectable({ providedIn: 'root' })
export class WebSocketService implements OnDestroy {
  private readonly zone = inject(NgZone);
  private readonly client: CdcClient;

  /** Every event (key changes, compaction, health, sync, snapshot, custom). */
  readonly events$: Observable<ServerEvent>;
  /** connected | disconnected | reconnecting | polling | unauthorized (current value first). */
  readonly connectionStatus$: Observable<ConnectionStatus>;
  /** The server no longer has the history we asked for: refetch state, then keep listening. */
  readonly resets$: Observable<ResetFrame>;
  /** Server error frames and connection errors (never contain the token). */
  readonly errors$: Observable<ErrorFrame>;

  constructor() {
    const options = inject(CDC_CLIENT_OPTIONS, { optional: true }) ?? {};
    this.client = this.zone.runOutsideAngular(() => new CdcClient(options));
    this.events$ = this.wrap(this.client.events);
    this.connectionStatus$ = this.wrap(this.client.status).pipe(distinctUntilChanged());
    this.resets$ = this.wrap(this.client.resets);
    this.errors$ = this.wrap(this.client.errors);
  }

  /** Connect (or reconnect with a new token) once the user is authenticated. */
  connect(token: string): void {
    this.zone.runOutsideAngular(() => this.client.connect(token));
  }

  disconnect(): void {
    this.client.disconnect();
  }

  /** Refresh the token without dropping the connection. */
  setToken(token: string): void {
    this.zone.runOutsideAngular(() => this.client.setToken(token));
  }

  /** Change what the server sends (types, cf, prefix) without reconnecting. */
  setFilter(f: Filter): void {
    this.client.subscribe(f);
  }

  /** Id of the last event delivered (resume cursor). */
  get lastId(): number | null {
    return this.client.lastId;
  }

  onKeyChanges(): Observable<KeyChangeEvent> {
    return this.wrap(this.client.onKeyChanges());
  }

  /** Key Explorer: changes to one key (or, with `prefix: true`, to every key under it). */
  onKeyChange(key: string, opts: { cf?: string; prefix?: boolean } = {}): Observable<KeyChangeEvent> {
    return this.onKeyChanges().pipe(
      filter((ev) => (opts.prefix ? ev.key.startsWith(key) : ev.key === key)),
      filter((ev) => opts.cf === undefined || ev.cf === opts.cf),
    );
  }

  onCompactionEvents(): Observable<CompactionEvent> {
    return this.wrap(this.client.onCompactionEvents());
  }

  onFlushEvents(): Observable<FlushEvent> {
    return this.wrap(this.client.onFlushEvents());
  }

  onHealthEvents(): Observable<HealthEvent> {
    return this.wrap(this.client.onHealthEvents());
  }

  onSyncEvents(): Observable<SyncEvent> {
    return this.wrap(this.client.onSyncEvents());
  }

  onSnapshotEvents(): Observable<SnapshotEvent> {
    return this.wrap(this.client.onSnapshotEvents());
  }

  onCaptureGaps(): Observable<CaptureGapEvent> {
    return this.wrap(this.client.onCaptureGaps());
  }

  /** Events per second over the last `windowMs` (Dashboard: live stats); one window per subscriber. */
  eventRate$(windowMs = 1000): Observable<number> {
    return defer(() => {
      const stamps: number[] = [];
      return this.events$.pipe(
        map(() => {
          const now = Date.now();
          stamps.push(now);
          while (stamps.length > 0 && stamps[0] < now - windowMs) stamps.shift();
          return (stamps.length * 1000) / windowMs;
        }),
      );
    });
  }

  ngOnDestroy(): void {
    this.client.disconnect();
  }

  private wrap<T>(stream: CdcStream<T>): Observable<T> {
    // CdcStream implements Symbol.observable, so RxJS `from` adopts it directly.
    return inZone(this.zone, from(stream));
  }
}
