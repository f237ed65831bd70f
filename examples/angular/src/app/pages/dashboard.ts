import { Component, computed, inject } from '@angular/core';
import { KeyValuePipe } from '@angular/common';

import { WebSocketService, type ServerEvent } from '../cdc/websocket.service';
import { bytes, time } from './format';

/** Live stats: the daemon's 1 s `stats` frames, plus what this tab has received. */
@Component({
  selector: 'app-dashboard',
  imports: [KeyValuePipe],
  template: `
    <h1>Dashboard</h1>
    <section class="cards">
      <div class="card"><span class="label">events/s</span><span id="events-per-s" class="big">{{ rate() }}</span></div>
      <div class="card"><span class="label">capture lag</span><span id="capture-lag" class="big">{{ lag() }}</span></div>
      <div class="card"><span class="label">WAL</span><span id="wal-bytes" class="big">{{ fmt(s()?.wal_bytes) }}</span></div>
      <div class="card"><span class="label">running compactions</span><span id="running-compactions" class="big">{{ s()?.running_compactions ?? '–' }}</span></div>
      <div class="card"><span class="label">subscribers</span><span id="subscribers" class="big">{{ s()?.subscribers ?? '–' }}</span></div>
      <div class="card"><span class="label">last event id</span><span id="last-id" class="big">{{ ws.lastId() ?? '–' }}</span></div>
    </section>
    <p id="stats-state" class="muted">
      @if (s(); as st) { stats at {{ t(st.timestamp) }} (every {{ st.interval_ms }} ms) }
      @else if (ws.statsStatus() === 'unsupported') { this daemon sends no stats frames (types=stats refused) }
      @else { waiting for the first stats frame ({{ ws.statsStatus() }}) }
    </p>
    <div class="cols">
      <section>
        <h2>Column families</h2>
        <table id="cf-table">
          <thead><tr><th>cf</th><th>puts/s</th><th>deletes/s</th><th>puts</th><th>deletes</th><th>merges</th><th>range deletes</th><th>bytes</th></tr></thead>
          <tbody>
            @for (row of cfRows(); track row.cf) {
              <tr [attr.data-cf]="row.cf">
                <td>{{ row.cf }}</td><td>{{ row.interval.put }}</td><td>{{ row.interval.delete }}</td>
                <td class="total-put">{{ row.total.put }}</td><td>{{ row.total.delete }}</td><td>{{ row.total.merge }}</td>
                <td>{{ row.total.delete_range }}</td><td>{{ fmt(row.total.bytes) }}</td>
              </tr>
            }
          </tbody>
        </table>
        <h2>SST bytes per level</h2>
        @if (s() && !(s()!.sst_bytes | keyvalue).length) { <p class="muted">no SST files yet</p> }
        <table id="sst-table">
          <tbody>
            @for (cf of s()?.sst_bytes | keyvalue; track cf.key) {
              <tr [attr.data-cf]="cf.key"><td>{{ cf.key }}</td>
                @for (lvl of cf.value | keyvalue; track lvl.key) { <td>L{{ lvl.key }}: {{ fmt(lvl.value) }}</td> }
              </tr>
            }
          </tbody>
        </table>
      </section>
      <section>
        <h2>Received by this tab</h2>
        <table id="counts">
          <tbody>
            @for (c of ws.counts() | keyvalue; track c.key) {
              <tr [attr.data-type]="c.key"><td>{{ c.key }}</td><td class="n">{{ c.value }}</td></tr>
            }
          </tbody>
        </table>
        <h2>Latest events</h2>
        <ul id="recent" class="feed">
          @for (ev of latest(); track ev.id) {
            <li>#{{ ev.id }} {{ t(ev.timestamp) }} <b>{{ ev.type }}</b> {{ summary(ev) }}</li>
          }
        </ul>
      </section>
    </div>
  `,
})
export class DashboardPage {
  protected readonly ws = inject(WebSocketService);
  protected readonly s = this.ws.stats();
  protected readonly latest = computed(() => this.ws.recent().slice(0, 12));
  protected readonly cfRows = computed(() => {
    const st = this.s();
    return st ? Object.entries(st.cf).map(([cf, v]) => ({ cf, ...v })) : [];
  });
  protected readonly lag = computed(() => {
    const st = this.s();
    return st ? `${bytes(st.capture_lag_bytes)} / ${st.capture_lag_ms} ms` : '–';
  });
  protected readonly rate = computed(() => {
    const st = this.s();
    return st ? st.events_per_s.toFixed(1) : '–';
  });
  protected readonly fmt = bytes;
  protected readonly t = time;

  protected summary(ev: ServerEvent): string {
    const e = ev as unknown as Record<string, unknown>;
    if (ev.type === 'key_change') return `${e['operation']} ${e['cf']}:${e['key']}`;
    if ('status' in ev) return `${e['status']} ${e['name'] ?? e['probe'] ?? e['cf'] ?? ''}`;
    return '';
  }
}
