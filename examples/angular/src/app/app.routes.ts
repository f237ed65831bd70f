import { Routes } from '@angular/router';

import { CompactionPage } from './pages/compaction';
import { DashboardPage } from './pages/dashboard';
import { HealthPage } from './pages/health';
import { KeysPage } from './pages/keys';
import { LoginPage } from './pages/login';
import { SnapshotsPage } from './pages/snapshots';

export const routes: Routes = [
  { path: '', component: DashboardPage, title: 'Dashboard' },
  { path: 'keys', component: KeysPage, title: 'Key Explorer' },
  { path: 'compaction', component: CompactionPage, title: 'Compaction' },
  { path: 'health', component: HealthPage, title: 'Health' },
  { path: 'snapshots', component: SnapshotsPage, title: 'Snapshots' },
  { path: 'login', component: LoginPage, title: 'Sign in' },
  { path: '**', redirectTo: '' },
];
