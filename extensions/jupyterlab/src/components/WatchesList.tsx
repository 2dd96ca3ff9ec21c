/**
 * The user's watches in the Data Lake panel: one line each — what it watches, what it
 * runs, files done, failed and waiting — with a Stop button. Watches run in notebook
 * kernels or in `escape-portal watch run`; the panel reads them every few seconds while
 * it is shown and stops one through the server.
 */
import * as React from 'react';
import { Button } from '@jupyterlab/ui-components';

import { PortalAPI } from '../api';
import { userMessage } from '../request';
import { IWatch } from '../tokens';
import { watchSummary } from '../models/format';
import { ErrorLine } from './common';

/** Milliseconds between two readings of the watches. */
export const WATCHES_EVERY = 10_000;

export function WatchesList(props: {
  api: PortalAPI;
  revision: number;
}): JSX.Element | null {
  const [watches, setWatches] = React.useState<IWatch[]>([]);
  const [error, setError] = React.useState<string | null>(null);
  const [tick, setTick] = React.useState(0);

  React.useEffect(() => {
    let alive = true;
    props.api
      .watches()
      .then(found => {
        if (alive) {
          setWatches(found);
          setError(null);
        }
      })
      .catch(reason => alive && setError(userMessage(reason)));
    const timer = window.setTimeout(() => setTick(t => t + 1), WATCHES_EVERY);
    return () => {
      alive = false;
      window.clearTimeout(timer);
    };
  }, [props.api, props.revision, tick]);

  if (!watches.length && !error) {
    return null;
  }
  const stop = async (name: string) => {
    try {
      const now = await props.api.stopWatch(name);
      setWatches(ws => ws.map(w => (w.name === name ? now : w)));
    } catch (reason) {
      setError(userMessage(reason));
    }
  };
  return (
    <section className="ep-Section ep-Watches" aria-label="Watches">
      <h3 className="ep-Section-title">Watches</h3>
      {watches.map(w => (
        <div
          key={w.name}
          className={`ep-Watch ep-mod-${w.state}`}
          data-watch={w.name}
          data-state={w.state}
        >
          <span className="ep-Watch-name" title={`runs ${w.function}`}>
            {w.name}
          </span>
          <span className="ep-Watch-target" title={w.target}>
            {w.target}
          </span>
          <span className={`ep-Badge ep-mod-${w.state}`}>{w.state}</span>
          <span className="ep-Watch-counts" title={w.last_error ?? undefined}>
            {watchSummary(w)}
          </span>
          {w.state === 'running' && (
            <Button
              small
              minimal
              aria-label={`Stop watch ${w.name}`}
              onClick={() => void stop(w.name)}
            >
              Stop
            </Button>
          )}
        </div>
      ))}
      <ErrorLine message={error} />
    </section>
  );
}
