/**
 * The details of a DID: size, file count, metadata, replicas by site with their distance
 * from the compute site, rules with their progress, and the actions on it.
 */
import * as React from 'react';
import { Button } from '@jupyterlab/ui-components';

import { IPortalContext } from '../context';
import { formatBytes, formatCount } from '../models/format';
import { userMessage } from '../request';
import { IDIDDetails, IReplicas, IRules } from '../tokens';
import { ErrorLine, ProgressBar, TransferRow } from './common';

/** Rucio's own bookkeeping columns: not what a researcher means by metadata. */
const RUCIO_FIELDS = new Set([
  'scope',
  'name',
  'did_type',
  'bytes',
  'length',
  'adler32',
  'md5',
  'account',
  'availability',
  'monotonic',
  'hidden',
  'obsolete',
  'is_new',
  'is_open',
  'complete',
  'purge_replicas',
  'transient',
  'suppressed',
  'created_at',
  'updated_at',
  'accessed_at',
  'access_cnt',
  'closed_at',
  'deleted_at',
  'eol_at',
  'expired_at',
  'guid',
  'is_archive',
  'constituent',
  'events',
  'lumiblocknr',
  'panda_id',
  'task_id',
  'prod_step',
  'provenance',
  'phys_group',
  'stream_name',
  'run_number',
  'campaign',
  'datatype',
  'version',
  'project'
]);

/** The metadata a researcher set (`target`, `ra`, ...), without Rucio's bookkeeping. */
export function userMetadata(
  metadata: Record<string, unknown>
): Array<[string, unknown]> {
  return Object.entries(metadata).filter(
    ([k, v]) =>
      !RUCIO_FIELDS.has(k) && v !== null && v !== undefined && v !== ''
  );
}

interface IDetailsState {
  details: IDIDDetails | null;
  replicas: IReplicas | null;
  rules: IRules | null;
  error: string | null;
}

export function DetailsView(props: {
  context: IPortalContext;
  did: string;
  /** Changes when the data may have moved (a transfer finished). */
  revision: number;
}): JSX.Element {
  const { context, did } = props;
  const [state, setState] = React.useState<IDetailsState>({
    details: null,
    replicas: null,
    rules: null,
    error: null
  });
  React.useEffect(() => {
    let live = true;
    setState(s => ({
      ...s,
      error: null,
      ...(s.details?.did === did
        ? {}
        : { details: null, replicas: null, rules: null })
    }));
    const { api } = context;
    Promise.allSettled([
      api.details(did),
      api.replicas(did),
      api.rules(did)
    ]).then(([details, replicas, rules]) => {
      if (!live) {
        return;
      }
      const failed = [details, replicas, rules].find(
        r => r.status === 'rejected'
      ) as PromiseRejectedResult | undefined;
      setState({
        details: details.status === 'fulfilled' ? details.value : null,
        replicas: replicas.status === 'fulfilled' ? replicas.value : null,
        rules: rules.status === 'fulfilled' ? rules.value : null,
        error: failed ? userMessage(failed.reason) : null
      });
    });
    return () => {
      live = false;
    };
  }, [context, did, props.revision]);

  const d = state.details;
  const transfer = context.transfers.find(did);
  const metadata = d ? userMetadata(d.metadata ?? {}) : [];
  return (
    <section
      className="ep-Section ep-Details"
      aria-label={`Details of ${did}`}
      data-did={did}
    >
      <h3 className="ep-Section-title" title={did}>
        {did}
      </h3>
      <ErrorLine message={state.error} />
      {d && (
        <dl className="ep-Facts">
          <dt>Type</dt>
          <dd>{d.type ?? '—'}</dd>
          <dt>Size</dt>
          <dd>{formatBytes(d.bytes)}</dd>
          {d.type !== 'file' && (
            <>
              <dt>Files</dt>
              <dd className="ep-FileCount">{formatCount(d.length)}</dd>
            </>
          )}
          {d.parents.length > 0 && (
            <>
              <dt>In</dt>
              <dd>{d.parents.map(p => `${p.scope}:${p.name}`).join(', ')}</dd>
            </>
          )}
        </dl>
      )}
      {metadata.length > 0 && (
        <details className="ep-Metadata" open={metadata.length <= 6}>
          <summary>Metadata ({metadata.length})</summary>
          <dl className="ep-Facts">
            {metadata.map(([k, v]) => (
              <React.Fragment key={k}>
                <dt>{k}</dt>
                <dd>{typeof v === 'object' ? JSON.stringify(v) : String(v)}</dd>
              </React.Fragment>
            ))}
          </dl>
        </details>
      )}
      <div className="ep-Actions">
        <Button
          className="ep-MakeAvailable"
          onClick={() => void context.makeAvailable([did])}
          title="Bring a replica next to the compute that runs your notebooks"
        >
          Make available near compute
        </Button>
        <Button
          className="ep-OpenInNotebook"
          minimal
          onClick={() => void context.openInNotebook(did, d?.type ?? null)}
          title="Insert a cell that opens this data into the active notebook"
        >
          Open in notebook
        </Button>
        <Button
          className="ep-Attach"
          minimal
          onClick={() => void context.attachToNotebook([did])}
          title="Keep this DID in the notebook's metadata, with a cell that opens it"
        >
          Attach
        </Button>
      </div>
      {transfer && <TransferRow transfer={transfer} />}
      {state.replicas && (
        <table className="ep-Table ep-Replicas">
          <caption>
            Replicas by site (compute site:{' '}
            {state.replicas.compute_site ?? 'unknown'})
          </caption>
          <thead>
            <tr>
              <th scope="col">Storage</th>
              <th scope="col">Site</th>
              <th scope="col">Files</th>
              <th scope="col">Distance</th>
            </tr>
          </thead>
          <tbody>
            {state.replicas.replicas.length === 0 && (
              <tr>
                <td colSpan={4}>No replica.</td>
              </tr>
            )}
            {state.replicas.replicas.map(r => (
              <tr
                key={r.rse}
                className={r.at_compute_site ? 'ep-mod-near' : ''}
              >
                <td>
                  {r.rse}
                  {r.mounted ? ' (mounted)' : ''}
                </td>
                <td>{r.site ?? '—'}</td>
                <td>
                  {formatCount(r.available_files)}/{formatCount(r.total_files)}
                </td>
                <td>
                  {r.at_compute_site
                    ? 'at compute'
                    : r.km === null
                      ? '—'
                      : `${r.km.toLocaleString('en-US')} km`}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {state.rules && state.rules.rules.length > 0 && (
        <div className="ep-Rules">
          <div className="ep-Caption">Rules</div>
          {state.rules.rules.map(rule => {
            const total =
              rule.total_locks ??
              rule.locks_ok + rule.locks_replicating + rule.locks_stuck;
            const fraction = total
              ? rule.locks_ok / total
              : rule.state === 'OK'
                ? 1
                : 0;
            const words =
              rule.state === 'OK'
                ? 'available'
                : rule.state === 'STUCK'
                  ? 'stuck'
                  : 'replicating';
            return (
              <div key={rule.id} className="ep-Rule" title={rule.comment ?? ''}>
                <div>
                  {rule.rse_expression} · {rule.state} · {rule.locks_ok}/{total}{' '}
                  files
                  {rule.expires_at
                    ? ` · expires ${rule.expires_at.slice(0, 10)}`
                    : ''}
                </div>
                <ProgressBar
                  fraction={fraction}
                  state={words}
                  label={`Rule ${rule.id}`}
                />
                {rule.error && (
                  <div className="ep-Transfer-stuck">{rule.error}</div>
                )}
              </div>
            );
          })}
        </div>
      )}
    </section>
  );
}
