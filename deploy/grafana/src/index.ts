// The dashboards, by the file name they are provisioned from (deploy/grafana/dashboards/<name>).
import type { Dashboard } from '@grafana/schema';
import { clusterOverview } from './cluster-overview';
import { nodeDetail } from './node-detail';
import { redisFanout } from './redis-fanout';

export const dashboards: Record<string, Dashboard> = {
  'relaychat-cluster.json': clusterOverview,
  'relaychat-node.json': nodeDetail,
  'relaychat-redis-fanout.json': redisFanout,
};
