// The same app with zone.js change detection (`ng build --configuration production,zone`, output
// in dist/cdc-angular-example-zone): WebSocketService works in zone.js apps as in zoneless ones.
import { mergeApplicationConfig, provideZoneChangeDetection } from '@angular/core';
import { bootstrapApplication } from '@angular/platform-browser';

import { App } from './app/app';
import { appConfig } from './app/app.config';

bootstrapApplication(
  App,
  mergeApplicationConfig(appConfig, { providers: [provideZoneChangeDetection({ eventCoalescing: true })] }),
).catch((err) => console.error(err));
