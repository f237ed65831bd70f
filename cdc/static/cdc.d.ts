// TypeScript declarations for the cdc browser client (`/client.js`) and the events it delivers.
//
// The event interfaces mirror the msgspec Structs in cdc/model/events.py (the JSON Schema is served
// at `/schema.json`); tests/frontend/test_dts.py fails when a type or field is missing here, has
// an incompatible type, or an enumerated field (status, probe, operation, reason, *_encoding)
// lists other values than the schema's `enum`. The server omits `cf`, `details` and `reason` when they hold their
// default; CdcClient fills them back in, so they are declared present. Other defaulted fields
// (`*_encoding`, `end_key`, `value`, `job`) are optional.

// --------------------------------------------------------------------------- events

/** Fields every event carries. `id` is the journal cursor: strictly increasing. */
export interface BaseEvent {
  /** Journal cursor, strictly increasing (also across daemon restarts). */
  id: number;
  /** Event type tag. */
  type: string;
  /** Capture time, integer milliseconds since the Unix epoch. */
  timestamp: number;
}

/** "base64" when the bytes were not valid UTF-8 (the text is then base64). */
export type BytesEncoding = "base64";

export type KeyOperation = "put" | "delete" | "single_delete" | "merge" | "delete_range" | "put_entity";

/** A key written to the store (one WAL record). */
export interface KeyChangeEvent extends BaseEvent {
  type: "key_change";
  operation: KeyOperation;
  key: string;
  key_encoding?: BytesEncoding | null;
  /** Column family name ("default" when the server omitted it). */
  cf: string;
  /** The store's sequence number of this record. */
  seq: number;
  /** Who wrote it: the WriteBatch's LogData blob `cdc-origin:<origin>` (UTF-8, <= 256 bytes). */
  origin?: string | null;
  /** When its WAL record holds more than one change: the record's first sequence number... */
  batch_seq?: number | null;
  /** ...and how many key_change events it produced. */
  batch_count?: number | null;
  /** delete_range only: exclusive end of the range. */
  end_key?: string | null;
  end_key_encoding?: BytesEncoding | null;
  /** Only with `values: true` and a token that allows values. */
  value?: string | null;
  value_encoding?: BytesEncoding | null;
}

/** Known keys of compaction/flush `details` (cdc/infolog.py); others may appear. */
export interface JobDetails {
  job?: number;
  compaction_reason?: string;
  /** Input files by level key ("files_L0": [12, 13], ...). */
  input_files?: Record<string, number[]>;
  input_file_count?: number;
  input_bytes?: number;
  output_level?: number;
  output_files?: number[];
  output_file_count?: number;
  output_bytes?: number;
  /** running: output bytes written so far. */
  bytes_written?: number;
  /** running: percent 0..100 of input bytes (where known). */
  progress?: number;
  elapsed_ms?: number;
  started_at_ms?: number;
  duration_us?: number;
  duration_ms?: number;
  records_in?: number;
  records_out?: number;
  trivial_move?: boolean;
  /** failed: the store's status text. */
  reason?: string;
  /** The LOG line was cut; some fields may be missing. */
  truncated?: boolean;
  [key: string]: unknown;
}

export type CompactionState = "started" | "running" | "completed" | "failed";

export interface CompactionEvent extends BaseEvent {
  type: "compaction_status";
  status: CompactionState;
  cf: string;
  job?: number | null;
  details: JobDetails;
}

export type FlushState = "started" | "completed" | "failed";

export interface FlushEvent extends BaseEvent {
  type: "flush_status";
  status: FlushState;
  cf: string;
  job?: number | null;
  details: JobDetails;
}

export type Probe = "liveness" | "readiness" | "startup";
export type HealthState = "healthy" | "unhealthy";

export interface HealthEvent extends BaseEvent {
  type: "health_change";
  probe: Probe;
  status: HealthState;
  reason: string;
}

export type SyncState = "started" | "completed" | "conflict";

export interface SyncEvent extends BaseEvent {
  type: "sync_event";
  status: SyncState;
  details: Record<string, unknown>;
}

export type SnapshotState = "started" | "completed" | "failed" | "deleted";

export interface SnapshotEvent extends BaseEvent {
  type: "snapshot_event";
  status: SnapshotState;
  name: string;
  details: Record<string, unknown>;
}

/** Sequence numbers the capture could not read (e.g. a WAL deleted while cdc was down). */
export interface CaptureGapEvent extends BaseEvent {
  type: "capture_gap";
  from_seq: number;
  to_seq: number;
  reason: string;
}

export type ResetReason = "replaced" | "recovered_earlier";

/** The store went back in time (replaced, or recovered to an earlier seq); capture goes on in its new history. */
export interface StoreResetEvent extends BaseEvent {
  type: "store_reset";
  reason: ResetReason;
  old_wal: number;
  old_offset: number;
  old_seq: number;
  new_wal: number;
  new_offset: number;
  new_seq: number;
  old_db_id?: string;
  new_db_id?: string;
  message?: string;
}

/** An event published with a namespaced custom type (`cdc publish --type myapp.reindex`). */
export interface CustomEvent extends BaseEvent {
  type: `${string}.${string}`;
  [key: string]: unknown;
}

/** Aliases in the seed's naming. */
export type CompactionStatusEvent = CompactionEvent;
export type HealthChangeEvent = HealthEvent;
export type SyncStatusEvent = SyncEvent;

/** Every event the server sends (discriminated by `type`). */
export type CdcEvent =
  | KeyChangeEvent
  | CompactionEvent
  | FlushEvent
  | HealthEvent
  | SyncEvent
  | SnapshotEvent
  | CaptureGapEvent
  | StoreResetEvent;

/** The seed's name for the union, plus custom published events. */
export type ServerEvent = CdcEvent | CustomEvent;

export type EventType = CdcEvent["type"];

export interface EventByType {
  key_change: KeyChangeEvent;
  compaction_status: CompactionEvent;
  flush_status: FlushEvent;
  health_change: HealthEvent;
  sync_event: SyncEvent;
  snapshot_event: SnapshotEvent;
  capture_gap: CaptureGapEvent;
  store_reset: StoreResetEvent;
}

// --------------------------------------------------------------------------- control frames (no id)

export interface HelloFrame {
  type: "hello";
  version?: string;
  latest_id: number;
  oldest_id?: number;
  heartbeat_ms: number;
  /** The journal's identity: a cursor (since) is only meaningful with the epoch it came from. */
  epoch?: string;
  /** The token's expiry (seconds since the epoch), when it has one. */
  exp?: number;
  /** The filter in effect after narrowing to the token's scope. */
  filter?: Record<string, unknown>;
  values?: boolean;
  [key: string]: unknown;
}

export interface HeartbeatFrame {
  type: "heartbeat";
  latest_id: number;
  [key: string]: unknown;
}

export interface PongFrame {
  type: "pong";
  [key: string]: unknown;
}

export interface SubscribedFrame {
  type: "subscribed";
  filter?: Record<string, unknown>;
  values?: boolean;
  [key: string]: unknown;
}

/**
 * The cursor asked for is older than what the server retains ("cursor_expired"), or the
 * server is behind the client's cursor ("cursor_ahead", client-generated): refetch your state.
 */
export interface ResetFrame {
  type: "reset";
  reason: "cursor_expired" | "cursor_ahead" | "epoch_changed" | (string & {});
  /** The journal identity the client should follow from now on. */
  epoch?: string;
  oldest_id?: number;
  latest_id?: number;
  [key: string]: unknown;
}

/** A server `error` frame, or a client-side error (code = close code / 4401 / 4403). */
export interface ErrorFrame {
  type: "error";
  /** Server error frames: what was wrong. */
  error?: string;
  /** Client-side errors: what happened. */
  reason?: string;
  code?: number;
  message?: string;
  [key: string]: unknown;
}

/** Answer to {"op":"auth"} (setToken): the new token is in effect. */
export interface AuthenticatedFrame {
  type: "authenticated";
  exp?: number;
  [key: string]: unknown;
}

/** Counts of one column family's changes (`delete` includes single deletes). */
export interface StatsCounts {
  put: number;
  delete: number;
  merge: number;
  delete_range: number;
  /** Key + value bytes of those changes (start + end key for range deletes). */
  bytes: number;
}

export interface StatsCf {
  /** In the last interval. */
  interval: StatsCounts;
  /** Since the daemon started. */
  total: StatsCounts;
}

/** `types=stats` (opt-in): about once per `interval_ms`; no `id`, not journaled. */
export interface StatsFrame {
  type: "stats";
  timestamp: number;
  interval_ms: number;
  /** Events journaled per second over the interval (every type). */
  events_per_s: number;
  cf: Record<string, StatsCf>;
  /** WAL bytes written and not captured yet. */
  capture_lag_bytes: number;
  /** 0 when caught up, else how long capture has not been caught up. */
  capture_lag_ms: number;
  /** Size of the live WAL files. */
  wal_bytes: number;
  /** Live SST bytes per column family and level ("0", "1", ...). */
  sst_bytes: Record<string, Record<string, number>>;
  running_compactions: number;
  /** Open WebSocket subscribers. */
  subscribers: number;
}

export type ControlFrame =
  | HelloFrame
  | HeartbeatFrame
  | PongFrame
  | SubscribedFrame
  | AuthenticatedFrame
  | ResetFrame
  | ErrorFrame;

// --------------------------------------------------------------------------- streams

declare global {
  interface SymbolConstructor {
    /** Interop symbol (declared the same way by RxJS); "@@observable" where it is not defined. */
    readonly observable: symbol;
  }
}

export interface Unsubscribable {
  unsubscribe(): void;
}

export interface Subscription extends Unsubscribable {
  readonly closed: boolean;
}

export interface Observer<T> {
  next?: (value: T) => void;
  error?: (err: unknown) => void;
  complete?: () => void;
}

/**
 * A hot, multicast stream. Observable-compatible: RxJS `from(stream)` works through
 * `Symbol.observable` / "@@observable".
 */
export declare class CdcStream<T> {
  subscribe(next: (value: T) => void, error?: (err: unknown) => void, complete?: () => void): Subscription;
  subscribe(observer?: Partial<Observer<T>>): Subscription;
  /** Last value (replaying streams such as `status` only). */
  readonly value: T | undefined;
  [Symbol.observable](): CdcStream<T>;
  "@@observable"(): CdcStream<T>;
}

// --------------------------------------------------------------------------- client

export type ConnectionStatus = "connected" | "disconnected" | "reconnecting" | "polling" | "unauthorized";

export interface Filter {
  /** Event types; "stats" (opt-in) adds stats frames (see onStats). */
  types?: string[] | string;
  cf?: string[] | string;
  /** Key prefixes (a string is one prefix). */
  prefix?: string[] | string;
  /** Exact keys (a string is one key). Combines with prefix like every filter part (AND). */
  key?: string[] | string;
}

export interface CdcClientOptions extends Filter {
  /** WebSocket URL; default ws(s)://<same host>/ws/events. */
  url?: string;
  /** Long-poll URL; default http(s)://<host of url>/events. */
  pollUrl?: string;
  /** Resume cursor: deliver every retained event with id > since (0 = oldest retained). */
  since?: number;
  /** The journal identity `since` belongs to (hello.epoch); another journal answers with a reset ("epoch_changed"). */
  epoch?: string;
  /** Ask for values (the token must allow them). */
  values?: boolean;
  /** Let the server send several events per frame (JSON arrays; default true: much cheaper in browsers). */
  batch?: boolean;
  /** Milliseconds (1..60000): at most one key_change per key per window, the latest (intermediate values are skipped). */
  coalesce?: number;
  /** key_changes whose `origin` equals this (your own writes) are not emitted on any stream. */
  skipOrigin?: string;
  /** Client-side heartbeat interval; default: the server's hello.heartbeat_ms. */
  heartbeatMs?: number;
  /** An attempt without `hello` within this many ms has failed (default 10000). */
  connectTimeoutMs?: number;
  /** Reconnect delay = random(0, min(maxMs, baseMs * 2^attempt)) (default 500 / 30000). */
  backoff?: { baseMs?: number; maxMs?: number };
  /** A connection up this long resets the backoff (default 10000). */
  stableMs?: number;
  /** WebSocket failures before hello, in a row, before long-polling (default 3). */
  pollAfterFailures?: number;
  /** Long-poll timeout in seconds (default 25, server max 30). */
  pollTimeoutS?: number;
  /** false: never fall back to long-polling. */
  polling?: boolean;
  /**
   * Called before each connection attempt / poll, and shortly before the token's `exp`, for a
   * fresh token. With it, a 4401 on a working connection gets one new attempt (not a loop).
   */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** Injection points (tests, non-browser runtimes). */
  WebSocket?: typeof WebSocket;
  fetch?: typeof fetch;
}

export interface ClientStats {
  wsAttempts: number;
  wsOpened: number;
  polls: number;
  delivered: number;
  duplicates: number;
  reconnects: number;
  /** key_changes not emitted because of skipOrigin. */
  skipped: number;
}

export declare const STATUSES: readonly ConnectionStatus[];
export declare const EVENT_TYPES: readonly EventType[];

export declare class CdcClient {
  constructor(options?: CdcClientOptions);
  readonly url: string;
  readonly pollUrl: string;
  /** Resume cursor: id of the last event delivered (or the server position when none yet). */
  lastId: number | null;
  /** Identity of the journal lastId belongs to (sent as `epoch` with `since`). */
  epoch: string | null;
  /** The last hello frame. */
  readonly server: HelloFrame | null;
  readonly stats: ClientStats;
  /** Current status (same as status.value). */
  readonly state: ConnectionStatus;
  /** The filter in effect. */
  readonly filter: { types: string[]; cf: string[]; prefix: string[]; key: string[] };
  /** coalesce window in ms (0: off). */
  coalesce: number;
  /** key_changes with this origin are not emitted (null: off). */
  skipOrigin: string | null;
  /** The last stats frame received, or null. */
  readonly latestStats: StatsFrame | null;

  /** Every event, in id order, each once. */
  readonly events: CdcStream<ServerEvent>;
  /** Connection status; replays the current value to new subscribers. */
  readonly status: CdcStream<ConnectionStatus>;
  /** History expired / cursor mismatch: refetch state. */
  readonly resets: CdcStream<ResetFrame>;
  /** Server error frames and client-side connection errors (never contain the token). */
  readonly errors: CdcStream<ErrorFrame>;
  /** Every control frame (hello, heartbeat, pong, subscribed, authenticated, error, reset). */
  readonly control: CdcStream<ControlFrame>;

  /** (Re)connect, resuming from lastId. */
  connect(token?: string): void;
  /** Close and stop retrying; lastId is kept. */
  disconnect(): void;
  /** Refresh the token: sent as {"op":"auth"} on the open connection, used by later reconnects. */
  setToken(token: string): void;
  /** Change the filter (and whether values are sent) at runtime; omitted keys are kept. */
  subscribe(filter: Filter & { values?: boolean }): void;

  on<K extends EventType>(type: K): CdcStream<EventByType[K]>;
  on(...types: string[]): CdcStream<ServerEvent>;
  onKeyChanges(): CdcStream<KeyChangeEvent>;
  onCompactionEvents(): CdcStream<CompactionEvent>;
  onFlushEvents(): CdcStream<FlushEvent>;
  onHealthEvents(): CdcStream<HealthEvent>;
  onSyncEvents(): CdcStream<SyncEvent>;
  onSnapshotEvents(): CdcStream<SnapshotEvent>;
  onCaptureGaps(): CdcStream<CaptureGapEvent>;
  /** key_changes of one exact key; added to the server's key filter when one is in use. */
  onKey(key: string): CdcStream<KeyChangeEvent>;
  /** Stats frames; adds "stats" to the types filter (an empty one becomes the built-in types + "stats"). */
  onStats(): CdcStream<StatsFrame>;
}

export default CdcClient;
