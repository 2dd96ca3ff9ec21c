/** Small pieces shared by the panels. */
import * as React from 'react';

import { formatBytes, formatDuration, formatPercent } from '../models/format';
import { ITransfer } from '../models/transfers';

export function ErrorLine(props: {
  message: string | null;
}): JSX.Element | null {
  if (!props.message) {
    return null;
  }
  return (
    <div className="ep-Error" role="alert">
      {props.message}
    </div>
  );
}

export function ProgressBar(props: {
  fraction: number;
  state: string;
  label: string;
}): JSX.Element {
  const percent = Math.round(Math.min(1, Math.max(0, props.fraction)) * 100);
  return (
    <div
      className={`ep-ProgressBar ep-mod-${props.state}`}
      role="progressbar"
      aria-label={props.label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={percent}
    >
      <div className="ep-ProgressBar-fill" style={{ width: `${percent}%` }} />
    </div>
  );
}

const STATE_WORDS: Record<string, string> = {
  available: 'available near compute',
  replicating: 'copying',
  stuck: 'stuck',
  waiting: 'waiting'
};

/** One make-available request: state, progress, time left, stuck reason. */
export function TransferRow(props: { transfer: ITransfer }): JSX.Element {
  const t = props.transfer;
  return (
    <div
      className={`ep-Transfer ep-mod-${t.state}`}
      data-did={t.did}
      data-state={t.state}
    >
      <div className="ep-Transfer-head">
        <span className="ep-Transfer-did" title={t.did}>
          {t.did}
        </span>
        <span className={`ep-Badge ep-mod-${t.state}`}>
          {STATE_WORDS[t.state] ?? t.state}
        </span>
      </div>
      <ProgressBar
        fraction={t.fraction}
        state={t.state}
        label={`Progress of ${t.did}`}
      />
      <div className="ep-Transfer-detail">
        {formatPercent(t.fraction)} · {t.filesDone}/{t.filesTotal} files ·{' '}
        {formatBytes(t.bytesDone)} of {formatBytes(t.bytesTotal)}
        {t.destination ? ` → ${t.destination}` : ''}
        {t.state === 'replicating' && t.etaSeconds !== null
          ? ` · about ${formatDuration(t.etaSeconds)} left`
          : ''}
      </div>
      {t.state === 'stuck' && (
        <div className="ep-Transfer-stuck" role="status">
          Stuck: {t.stuckReason ?? 'the lake gave no reason'}. The lake retries
          stuck transfers; the data may also be read from where it is now.
        </div>
      )}
      <ErrorLine message={t.error} />
    </div>
  );
}

/** The transfers of this session. */
export function TransfersList(props: {
  transfers: readonly ITransfer[];
}): JSX.Element | null {
  if (!props.transfers.length) {
    return null;
  }
  return (
    <section
      className="ep-Section ep-Transfers"
      aria-label="Make available near compute"
    >
      <h3 className="ep-Section-title">Near compute</h3>
      {props.transfers.map(t => (
        <TransferRow key={t.did} transfer={t} />
      ))}
    </section>
  );
}

/** Re-render when a Lumino signal fires. */
export function useSignal(signal: {
  connect: (fn: () => void) => unknown;
  disconnect: (fn: () => void) => unknown;
}): void {
  const [, setTick] = React.useState(0);
  React.useEffect(() => {
    const bump = () => setTick(t => t + 1);
    signal.connect(bump);
    return () => {
      signal.disconnect(bump);
    };
  }, [signal]);
}
