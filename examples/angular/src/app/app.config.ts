import { ApplicationConfig, inject, provideBrowserGlobalErrorListeners } from '@angular/core';
import { provideRouter, withComponentInputBinding } from '@angular/router';

import { routes } from './app.routes';
import { AuthService } from './auth.service';
import { cdcConfigFromLocation } from './cdc/config';
import { CDC_AUTH_TOKEN, CDC_CONFIG } from './cdc/websocket.service';

// Zoneless (Angular's default since v21): no zone.js, no provideZoneChangeDetection().
export const appConfig: ApplicationConfig = {
  providers: [
    provideBrowserGlobalErrorListeners(),
    provideRouter(routes, withComponentInputBinding()),
    { provide: CDC_CONFIG, useFactory: cdcConfigFromLocation },
    { provide: CDC_AUTH_TOKEN, useFactory: () => inject(AuthService).token },
  ],
};
