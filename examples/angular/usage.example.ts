// How a component uses WebSocketService (type-checked with the service; not shipped).
import { Component, OnDestroy, OnInit, inject } from '@angular/core';
import { Subscription } from 'rxjs';
import { WebSocketService, type KeyChangeEvent, type ConnectionStatus } from './websocket.service';

@Component({
  selector: 'app-live-keys',
  standalone: true,
  template: `<p>{{ status }}</p>
    <ul>
      @for (ev of latest; track ev.id) {
        <li>{{ ev.operation }} {{ ev.key }}</li>
      }
    </ul>`,
})
export class LiveKeysComponent implements OnInit, OnDestroy {
  private readonly ws = inject(WebSocketService);
  private readonly subs = new Subscription();
  status: ConnectionStatus = 'disconnected';
  latest: KeyChangeEvent[] = [];

  ngOnInit(): void {
    this.subs.add(this.ws.connectionStatus$.subscribe((s) => (this.status = s)));
    this.subs.add(
      this.ws.onKeyChanges().subscribe((ev) => {
        this.latest = [ev, ...this.latest].slice(0, 50);
      }),
    );
    this.subs.add(this.ws.resets$.subscribe(() => (this.latest = [])));
    this.subs.add(
      this.ws.onHealthEvents().subscribe((ev) => {
        if (ev.status === 'unhealthy') console.warn(`${ev.probe} unhealthy: ${ev.reason ?? ''}`);
      }),
    );
    this.ws.connect(sessionStorage.getItem('cdc-token') ?? '');
  }

  ngOnDestroy(): void {
    this.subs.unsubscribe();
  }
}
