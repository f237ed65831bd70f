/**
 * WebSocketService: the cdc event stream for Angular, as signals and as observables.
 *
 * Wraps the daemon's dependency-free browser client (`./client.js`, a copy of the daemon's
 * `/client.js`), which does the hard parts: resume from the last id after any reconnect (no loss,
 * no duplicate), exponential backoff with jitter, heartbeat, long-poll fallback, `unauthorized`
 * without retrying.
 *
 * Invariants:
 * - Zone-agnostic. Signals are set directly from the client's callbacks, which schedules change
 *   detection in zoneless apps (Angular's default) and in zone.js apps alike. Observables emit
 *   inside NgZone.run(), a no-op without zone.js, so a zone.js app that assigns plain fields in
 *   subscribe() still renders. The client itself runs outside the zone (heartbeat and reconnect
 *   timers never trigger change detection).
 * - One connection per service (providedIn: 'root'). With CDC_AUTH_TOKEN provided it connects
 *   when the token appears, refreshes in-band (`{"op":"auth"}`, no reconnect) when it changes,
 *   and disconnects when it goes away (logout).
 * - `stats` (the daemon's 1 s `stats` frames, opt-in on the server) uses a second, stats-only
 *   connection opened on first use, so a daemon without them cannot break the event stream.
 */
import {
  DestroyRef,
  Injectable,
  InjectionToken,
  NgZone,
  type Signal,
  computed,
  effect,
  inject,
  signal,
  untracked,
} from '@angular/core';
import { Observable, distinctUntilChanged, filter, from } from 'rxjs';
import {
  CdcClient,
  type CdcClientOptions,
  type CdcStream,
  type CaptureGapEvent,
  type CompactionEvent,
  type ConnectionStatus,
  type ErrorFrame,
  type FlushEvent,
  type HealthEvent,
  type KeyChangeEvent,
  type ResetFrame,
  type ServerEvent,
  type SnapshotEvent,
  type StatsFrame,
  type SyncEvent,
} from './client';

export type {
  CaptureGapEvent,
  CompactionEvent,
  ConnectionStatus,
  ErrorFrame,
  FlushEvent,
  HealthEvent,
  KeyChangeEvent,
  ResetFrame,
  ServerEvent,
  SnapshotEvent,
  StatsFrame,
  SyncEvent,
} from './client';

/** The daemon's `stats` frame (about once a second with `types=stats`; no id, not journaled). */
export type CdcStats = StatsFrame;

/** Where the daemon is and what to ask it for. */
export interface CdcConfig extends CdcClientOptions {
  /** The daemon's base URL (http(s)://host:port); default: the page's own origin. */
  base?: string;
  /** How many recent events `recent` keeps (default 200). */
  recent?: number;
}

export const CDC_CONFIG = new InjectionToken<CdcConfig>('CDC_CONFIG');

/** The auth token to follow: connect when it is set, refresh when it changes, disconnect when null. */
export const CDC_AUTH_TOKEN = new InjectionToken<Signal<string | null>>('CDC_AUTH_TOKEN');

/** ws(s)://host[/prefix]/ws/events for a daemon base URL (a reverse proxy's path prefix is kept). */
export function wsUrl(base: string): string {
  const u = new URL(base.replace(/\/+$/, '') + '/ws/events');
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.toString();
}

@Injectable({ providedIn: 'root' })
export class WebSocketService {
  private readonly zone = inject(NgZone);
  private readonly config: CdcConfig = inject(CDC_CONFIG, { optional: true }) ?? {};
  private readonly client: CdcClient;
  private statsClient: CdcClient | null = null;
  private token: string | null = null;
  private active = false;

  /** The daemon's base URL (what `/health/*` and `/events` are fetched from). */
  readonly base: string;

  // ------------------------------------------------------------------ signals
  private readonly _status = signal<ConnectionStatus>('disconnected');
  private readonly _lastEvent = signal<ServerEvent | null>(null);
  private readonly _recent = signal<readonly ServerEvent[]>([]);
  private readonly _counts = signal<Readonly<Record<string, number>>>({});
  private readonly _lastId = signal<number | null>(null);
  private readonly _lastError = signal<ErrorFrame | null>(null);
  private readonly _stats = signal<CdcStats | null>(null);
  private readonly _statsStatus = signal<ConnectionStatus | 'unsupported'>('disconnected');

  /** connected | disconnected | reconnecting | polling | unauthorized. */
  readonly status = this._status.asReadonly();
  /** A WebSocket is up (hello received). */
  readonly connected = computed(() => this._status() === 'connected');
  /** Events are flowing, over WebSocket or the long-poll fallback. */
  readonly live = computed(() => this._status() === 'connected' || this._status() === 'polling');
  /** The newest event. */
  readonly lastEvent = this._lastEvent.asReadonly();
  /** The newest events, newest first. */
  readonly recent = this._recent.asReadonly();
  /** Events received per type since the app started. */
  readonly counts = this._counts.asReadonly();
  /** Resume cursor (id of the last event delivered). */
  readonly lastId = this._lastId.asReadonly();
  /** Last server error frame or connection error (never contains the token). */
  readonly lastError = this._lastError.asReadonly();

  // ------------------------------------------------------------------ observables (the epic's API)
  /** Every event, in id order, each once. */
  readonly events$: Observable<ServerEvent>;
  /** Connection status; the current value first. */
  readonly connectionStatus$: Observable<ConnectionStatus>;
  /** The server no longer has the history asked for: refetch state, then keep listening. */
  readonly resets$: Observable<ResetFrame>;
  /** Server error frames and connection errors. */
  readonly errors$: Observable<ErrorFrame>;

  constructor() {
    const { base, recent: _recent, ...options } = this.config;
    this.base = base ?? (typeof location !== 'undefined' ? location.origin : 'http://127.0.0.1:8765');
    const clientOptions: CdcClientOptions = { url: wsUrl(this.base), ...options };
    this.client = this.zone.runOutsideAngular(() => new CdcClient(clientOptions));
    const keep = this.config.recent ?? 200;

    this.client.status.subscribe((s) => {
      if (s === 'unauthorized') this.active = false;
      this._status.set(s);
    });
    this.client.events.subscribe((ev) => {
      this._lastEvent.set(ev);
      this._lastId.set(ev.id);
      this._recent.update((list) => [ev, ...list.slice(0, keep - 1)]);
      this._counts.update((c) => ({ ...c, [ev.type]: (c[ev.type] ?? 0) + 1 }));
    });
    this.client.errors.subscribe((e) => this._lastError.set(e));

    this.events$ = this.wrap(this.client.events);
    this.connectionStatus$ = this.wrap(this.client.status).pipe(distinctUntilChanged());
    this.resets$ = this.wrap(this.client.resets);
    this.errors$ = this.wrap(this.client.errors);

    const tokenSource = inject(CDC_AUTH_TOKEN, { optional: true });
    if (tokenSource) {
      effect(() => {
        const t = tokenSource();
        untracked(() => this.follow(t));
      });
    }
    inject(DestroyRef).onDestroy(() => this.disconnect());
  }

  // ------------------------------------------------------------------ connection
  /** Connect with `token` (or reconnect with a new one), resuming from the last event. */
  connect(token: string): void {
    this.token = token;
    this.active = true;
    this.zone.runOutsideAngular(() => {
      this.client.connect(token);
      this.statsClient?.connect(token);
    });
  }

  /** Close and stop retrying (logout). The cursor is kept: connect() resumes. */
  disconnect(): void {
    this.active = false;
    this.token = null;
    this.client.disconnect();
    this.statsClient?.disconnect();
  }

  /** A fresh token for the open connection: sent in-band, no reconnect; later reconnects use it. */
  refreshToken(token: string): void {
    if (!this.active) {
      this.connect(token); // not connected (or refused): this is a login
      return;
    }
    this.token = token;
    this.zone.runOutsideAngular(() => {
      this.client.setToken(token);
      this.statsClient?.setToken(token);
    });
  }

  /** What a token signal change means: logout, first login, or a refresh. */
  private follow(token: string | null): void {
    if (!token) {
      if (this.active || this._status() !== 'disconnected') this.disconnect();
    } else if (!this.active) {
      this.connect(token);
    } else if (token !== this.token) {
      this.refreshToken(token);
    }
  }

  // ------------------------------------------------------------------ streams
  onKeyChanges(): Observable<KeyChangeEvent> {
    return this.wrap(this.client.onKeyChanges());
  }

  /** Changes to one key (exact), or with `prefix: true` to every key under it. */
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

  // ------------------------------------------------------------------ stats (Dashboard)
  /**
   * The latest `stats` frame (null until the first arrives). The first call opens a stats-only
   * connection with the current token; `statsStatus` says how it goes ('unsupported' when the
   * daemon's client has no stats support).
   */
  stats(): Signal<CdcStats | null> {
    this.ensureStats();
    return this._stats.asReadonly();
  }

  readonly statsStatus = this._statsStatus.asReadonly();

  private ensureStats(): void {
    if (this.statsClient) return;
    const { base: _b, recent: _r, ...options } = this.config;
    const c = this.zone.runOutsideAngular(
      () => new CdcClient({ ...options, url: wsUrl(this.base), types: ['stats'], polling: false }),
    );
    this.statsClient = c;
    c.status.subscribe((s) => this._statsStatus.set(s));
    // A daemon without stats frames refuses the filter (4400): say so instead of retrying.
    c.errors.subscribe((e) => {
      if (e.code === 4400) this._statsStatus.set('unsupported');
    });
    c.onStats().subscribe((frame) => this._stats.set(frame));
    if (this.active && this.token) this.zone.runOutsideAngular(() => c.connect(this.token ?? undefined));
  }

  private wrap<T>(stream: CdcStream<T>): Observable<T> {
    // CdcStream implements Symbol.observable: RxJS `from` adopts it. Re-enter the zone (if any).
    const source = from(stream);
    return new Observable<T>((subscriber) =>
      source.subscribe({
        next: (value) => this.zone.run(() => subscriber.next(value)),
        error: (err: unknown) => this.zone.run(() => subscriber.error(err)),
        complete: () => this.zone.run(() => subscriber.complete()),
      }),
    );
  }
}
