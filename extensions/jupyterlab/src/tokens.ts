/**
 * The shapes of the REST API's answers (escape_portal/server/openapi.yaml) and the
 * extension's command ids. Field names follow the server's JSON exactly.
 */

/** The extension's id (its settings are `${PLUGIN_ID}:plugin`). */
export const PLUGIN_ID = 'escape-portal';

/** Commands, in the command palette under "ESCAPE Portal". */
export namespace CommandIDs {
  export const openDataLake = 'escape-portal:open-data-lake';
  export const openVOSearch = 'escape-portal:open-vo-search';
  export const makeAvailable = 'escape-portal:make-available';
  export const openInNotebook = 'escape-portal:open-in-notebook';
  export const attachToNotebook = 'escape-portal:attach-to-notebook';
  export const refresh = 'escape-portal:refresh';
}

/** Rucio's DID types, and `all` for searches. */
export type DIDType = 'file' | 'dataset' | 'container' | 'collection' | 'all';

/** One page of a listing and the cursor of the next (`null` on the last page). */
export interface IPage<T> {
  items: T[];
  next_cursor: string | null;
  limit?: number;
}

/** A configured Rucio instance (no secrets). */
export interface IInstance {
  name: string;
  active: boolean;
  rucio_host?: string | null;
  auth_type?: string | null;
  account?: string | null;
  compute_site?: string | null;
  vo_url?: string | null;
  [key: string]: unknown;
}

export interface IInstances {
  active: string | null;
  instances: IInstance[];
}

/** Who the user is on the instance, and how long the token is valid. */
export interface IWhoAmI {
  instance: string;
  rucio_host: string;
  account: string;
  auth_type: string;
  token_expires_at: string | null;
  token_valid_seconds: number | null;
  token_expired: boolean;
  /** Whether the portal renews the token itself before it expires. */
  token_renewable: boolean;
  /** In the user's words, when the token cannot be renewed and expires soon. */
  token_notice: string | null;
}

/** A DID as the listings give it. */
export interface IDIDInfo {
  scope: string;
  name: string;
  type: Exclude<DIDType, 'all' | 'collection'> | null;
  bytes?: number | null;
  length?: number | null;
  adler32?: string | null;
  md5?: string | null;
}

/** GET dids/{scope}/{name}. */
export interface IDIDDetails extends IDIDInfo {
  did: string;
  metadata: Record<string, unknown>;
  parents: IDIDInfo[];
}

/** GET dids/{scope}/{name}/contents: the DID and one page of what it holds. */
export interface IContents extends IPage<IDIDInfo> {
  did: IDIDInfo;
}

/** How much of a DID one storage element holds, and how far it is from the compute. */
export interface IReplica {
  scope: string;
  name: string;
  rse: string;
  site: string | null;
  available_files: number;
  total_files: number;
  available_bytes: number;
  total_bytes: number;
  state: string;
  complete: boolean;
  at_compute_site: boolean;
  mounted: boolean;
  km: number | null;
  throughput_mbps: number | null;
  latency_ms: number | null;
}

export interface IReplicas {
  did: string;
  compute_site: string | null;
  replicas: IReplica[];
  warnings: string[];
}

/** A replication rule. */
export interface IRule {
  id: string;
  scope: string;
  name: string;
  account: string;
  rse_expression: string;
  copies: number;
  state: string;
  locks_ok: number;
  locks_replicating: number;
  locks_stuck: number;
  total_locks?: number;
  expires_at: string | null;
  created_at: string | null;
  comment?: string | null;
  activity?: string | null;
  error?: string | null;
}

export interface IRules {
  did: string;
  rules: IRule[];
}

/** A rule's state in the user's words. */
export type ProgressState = 'available' | 'replicating' | 'stuck' | 'waiting';

/** One entry of GET watches: a function or notebook run on every new file. */
export interface IWatch {
  name: string;
  instance: string;
  target: string;
  function: string;
  state: 'running' | 'stopped' | 'idle';
  counts: Record<string, number>;
  created: string;
  last_error: string | null;
}

/** GET rules/{id}/progress. */
export interface IRuleProgress {
  rule_id: string;
  state: ProgressState;
  fraction: number;
  eta_seconds: number | null;
  rule: IRule;
  files_done: number;
  files_total: number;
  bytes_done: number;
  bytes_total: number;
  stuck_reason: string | null;
}

/** A storage element considered by the placement, with why it was (not) chosen. */
export interface ICandidate {
  rse: string;
  site: string | null;
  eligible: boolean;
  over_quota: boolean;
  reasons: string[];
  km: number | null;
  throughput_mbps: number | null;
  latency_ms: number | null;
}

/** GET dids/{scope}/{name}/placement: where the data would go, and why. */
export interface IPlacement {
  did: string;
  compute_site: string | null;
  bytes_total: number;
  needs_transfer: boolean;
  read_from: string | null;
  destination: string | null;
  summary: string;
  destinations: ICandidate[];
  sources: ICandidate[];
  warnings: string[];
}

/** One DID of a make-available answer. */
export interface IAvailabilityRequest {
  did: string;
  created: boolean;
  summary: string;
  destination: string | null;
  rule: IRule | null;
  state: ProgressState;
  progress: {
    files_done: number;
    files_total: number;
    bytes_done: number;
    bytes_total: number;
    fraction: number;
    eta_seconds: number | null;
    stuck_reason: string | null;
  } | null;
}

/** POST make-available. */
export interface IMakeAvailableAnswer {
  compute_site: string | null;
  requests: IAvailabilityRequest[];
}

/** POST download. */
export interface IDownloadAnswer {
  did: string;
  files: Array<{ path: string; [key: string]: unknown }>;
  bytes_downloaded: number;
}

/** A Virtual Observatory service. */
export interface IVOService {
  name: string;
  kind: 'tap' | 'sia2' | 'scs' | 'ssa' | string;
  url: string;
  ivoid?: string | null;
  title?: string;
}

/** GET vo/registry. */
export interface IRegistryAnswer {
  registry: string | null;
  services: IVOService[];
}

/** What a VO search asks for (POST vo/search). */
export interface IVOQuery {
  name?: string;
  pos?: [number, number];
  radius?: number;
  time?: [string, string] | string;
  band?: [number, number];
  collection?: string;
  dataproduct_type?: string;
  maxrec?: number;
  services?: IVOService[];
  timeout?: number;
  link?: boolean;
}

/** How one service answered a search. */
export interface IServiceStatus {
  service: IVOService;
  state: string;
  rows: number;
  seconds: number;
  message: string | null;
  query?: string | null;
  retry_after?: number | null;
}

export interface IColumn {
  name: string;
  unit: string | null;
  description: string | null;
}

/** One result row: ObsCore columns plus `service`, `lake_did`, `lake_link`, `lake_rses`. */
export type VORow = Record<string, unknown>;

/** POST vo/search. */
export interface IVOSearchAnswer {
  position: { name: string; ra: number; dec: number } | null;
  columns: IColumn[];
  rows: VORow[];
  statuses: IServiceStatus[];
  warnings: string[];
  seconds: number;
}

/** GET vo/resolve. */
export interface IResolved {
  name: string;
  ra: number;
  dec: number;
}

/** The user's settings (schema/plugin.json). */
export interface IPortalSettings {
  pageSize: number;
  progressPollSeconds: number;
  notifyWhenAvailable: boolean;
  openAction: 'reader' | 'attach';
  voRadius: number;
  voTimeout: number;
  voMaxRecords: number;
}

export const DEFAULT_SETTINGS: IPortalSettings = {
  pageSize: 200,
  progressPollSeconds: 2,
  notifyWhenAvailable: true,
  openAction: 'reader',
  voRadius: 1,
  voTimeout: 20,
  voMaxRecords: 1000
};
