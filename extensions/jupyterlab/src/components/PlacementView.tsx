/**
 * Where make-available will put the data and why: the placement of each DID, with the
 * storage elements it weighed and the reasons for each.
 */
import * as React from 'react';

import { PortalAPI } from '../api';
import { formatBytes } from '../models/format';
import { userMessage } from '../request';
import { ICandidate, IPlacement } from '../tokens';
import { ErrorLine } from './common';

function Candidates(props: {
  title: string;
  rows: ICandidate[];
  chosen: string | null;
}): JSX.Element | null {
  if (!props.rows.length) {
    return null;
  }
  return (
    <table className="ep-Table ep-Candidates">
      <caption>{props.title}</caption>
      <thead>
        <tr>
          <th scope="col">Storage</th>
          <th scope="col">Site</th>
          <th scope="col">Distance</th>
          <th scope="col">Why</th>
        </tr>
      </thead>
      <tbody>
        {props.rows.map(c => (
          <tr
            key={c.rse}
            className={`${c.rse === props.chosen ? 'ep-mod-chosen' : ''}${c.eligible ? '' : ' ep-mod-ineligible'}`}
          >
            <td>
              {c.rse === props.chosen ? '➜ ' : ''}
              {c.rse}
            </td>
            <td>{c.site ?? '—'}</td>
            <td>
              {c.km === null ? '—' : `${c.km.toLocaleString('en-US')} km`}
            </td>
            <td>
              {c.reasons.join('; ') ||
                (c.eligible ? 'eligible' : 'not eligible')}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function PlacementExplanation(props: {
  placement: IPlacement;
}): JSX.Element {
  const p = props.placement;
  return (
    <div className="ep-Placement" data-did={p.did}>
      <div className="ep-Placement-summary">
        <strong>{p.did}</strong> ({formatBytes(p.bytes_total)}): {p.summary}
      </div>
      <div className="ep-Placement-facts">
        Compute site: {p.compute_site ?? 'unknown'}
        {p.needs_transfer
          ? ` · destination: ${p.destination ?? 'none'}`
          : ` · already readable from ${p.read_from ?? 'a nearby storage'}`}
      </div>
      <Candidates
        title="Destinations considered"
        rows={p.destinations}
        chosen={p.destination}
      />
      <Candidates title="Sources" rows={p.sources} chosen={p.read_from} />
      {p.warnings.map(w => (
        <div key={w} className="ep-Warning">
          {w}
        </div>
      ))}
    </div>
  );
}

/** Loads and shows the placements of several DIDs (the make-available dialog's body). */
export function PlacementView(props: {
  api: PortalAPI;
  dids: string[];
}): JSX.Element {
  const [placements, setPlacements] = React.useState<IPlacement[]>([]);
  const [errors, setErrors] = React.useState<string[]>([]);
  const [loading, setLoading] = React.useState(true);
  React.useEffect(() => {
    let live = true;
    Promise.allSettled(props.dids.map(d => props.api.placement(d))).then(
      results => {
        if (!live) {
          return;
        }
        const found: IPlacement[] = [];
        const failed: string[] = [];
        results.forEach((r, i) => {
          if (r.status === 'fulfilled') {
            found.push(r.value);
          } else {
            failed.push(`${props.dids[i]}: ${userMessage(r.reason)}`);
          }
        });
        setPlacements(found);
        setErrors(failed);
        setLoading(false);
      }
    );
    return () => {
      live = false;
    };
  }, [props.api, props.dids]);
  return (
    <div className="ep-PlacementView">
      {loading && (
        <div className="ep-Muted">Working out where the data should go…</div>
      )}
      {placements.map(p => (
        <PlacementExplanation key={p.did} placement={p} />
      ))}
      {errors.map(e => (
        <ErrorLine key={e} message={e} />
      ))}
    </div>
  );
}
