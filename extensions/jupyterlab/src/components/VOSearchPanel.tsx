/**
 * The VO Search side panel: services from the registry, a query (position with name
 * resolution, radius, time, band, collection, product type), the results with each
 * service's status, rows found in the lake marked, and a sky footprint of the results.
 */
import * as React from 'react';
import { Button, searchIcon } from '@jupyterlab/ui-components';

import { IPortalContext } from '../context';
import { userMessage } from '../request';
import { buildVOQuery, num } from '../models/voquery';
import { IVOSearchAnswer, IVOService, VORow } from '../tokens';
import { ErrorLine, TransfersList, useSignal } from './common';
import { SkyFootprint } from './SkyFootprint';
import { VirtualList } from './VirtualList';

const PRODUCT_TYPES = [
  '',
  'image',
  'cube',
  'spectrum',
  'sed',
  'timeseries',
  'event',
  'measurements'
];

function cell(value: unknown, digits = 4): string {
  if (value === null || value === undefined || value === '') {
    return '—';
  }
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : value.toFixed(digits);
  }
  return String(value);
}

function Field(props: {
  label: string;
  children: React.ReactNode;
  hint?: string;
}): JSX.Element {
  return (
    <label className="ep-Field" title={props.hint}>
      <span className="ep-Field-label">{props.label}</span>
      {props.children}
    </label>
  );
}

export function VOSearchPanel(props: { context: IPortalContext }): JSX.Element {
  const { context } = props;
  const settings = context.settings();
  const [services, setServices] = React.useState<IVOService[]>([]);
  const [chosen, setChosen] = React.useState<Set<string>>(new Set());
  const [registryError, setRegistryError] = React.useState<string | null>(null);
  const [keywords, setKeywords] = React.useState('');
  const [form, setForm] = React.useState({
    name: '',
    ra: '',
    dec: '',
    radius: String(settings.voRadius),
    start: '',
    end: '',
    bandMin: '',
    bandMax: '',
    collection: '',
    product: ''
  });
  const [resolved, setResolved] = React.useState<string | null>(null);
  const [answer, setAnswer] = React.useState<IVOSearchAnswer | null>(null);
  const [searching, setSearching] = React.useState(false);
  const [error, setError] = React.useState<string | null>(null);
  const [selected, setSelected] = React.useState<number | null>(null);
  useSignal(context.transfers.changed);

  const findServices = React.useCallback(
    (words: string) => {
      setRegistryError(null);
      context.api
        .registry(words.split(/[\s,]+/).filter(Boolean))
        .then(found => {
          setServices(found.services);
          setChosen(new Set(found.services.map(s => s.url)));
        })
        .catch(reason => setRegistryError(userMessage(reason)));
    },
    [context]
  );
  React.useEffect(() => findServices(''), [findServices]);

  const set =
    (key: keyof typeof form) =>
    (e: React.ChangeEvent<HTMLInputElement | HTMLSelectElement>) =>
      setForm(f => ({ ...f, [key]: e.target.value }));

  const resolve = () => {
    if (!form.name.trim()) {
      return;
    }
    setResolved('Resolving…');
    context.api
      .resolve(form.name.trim())
      .then(r => {
        setResolved(
          `${r.name}: RA ${r.ra.toFixed(4)}°, Dec ${r.dec.toFixed(4)}°`
        );
        setForm(f => ({ ...f, ra: r.ra.toFixed(5), dec: r.dec.toFixed(5) }));
      })
      .catch(reason =>
        setResolved(
          `Not resolved: ${userMessage(reason)} Give RA and Dec instead.`
        )
      );
  };

  const search = (event?: React.FormEvent) => {
    event?.preventDefault();
    const { query, problems } = buildVOQuery({
      ...form,
      // a resolved name has filled RA/Dec: send the position (the search then needs no resolver)
      name:
        form.ra && form.dec && resolved && !resolved.startsWith('Not')
          ? ''
          : form.name,
      maxrec: settings.voMaxRecords,
      timeout: settings.voTimeout,
      services: services.filter(s => chosen.has(s.url))
    });
    if (problems.length) {
      setError(problems.join(' '));
      return;
    }
    setSearching(true);
    setError(null);
    setSelected(null);
    context.api
      .voSearch(query)
      .then(a => setAnswer(a))
      .catch(reason => setError(userMessage(reason)))
      .finally(() => setSearching(false));
  };

  const rows: VORow[] = answer?.rows ?? [];
  const linkedCount = rows.filter(r => r.lake_did).length;
  const position =
    answer?.position ??
    (num(form.ra) !== undefined && num(form.dec) !== undefined
      ? { ra: Number(form.ra), dec: Number(form.dec) }
      : null);

  const renderRow = (index: number) => {
    const row = rows[index];
    const did =
      typeof row.lake_did === 'string' && row.lake_did ? row.lake_did : null;
    return (
      <div
        className={`ep-VORow${did ? ' ep-mod-linked' : ''}${index === selected ? ' ep-mod-selected' : ''}`}
        data-row={index}
        data-did={did ?? undefined}
        onClick={() => setSelected(index)}
      >
        <div className="ep-VORow-line">
          <span
            className="ep-VORow-mark"
            title={
              did
                ? `In the lake as ${did} (${cell(row.lake_link)})`
                : 'Not in the lake'
            }
          >
            {did ? 'lake' : ''}
          </span>
          <span
            className="ep-VORow-title"
            title={did ?? cell(row.obs_title ?? row.obs_id)}
          >
            {cell(row.obs_id ?? row.obs_title ?? did)}
          </span>
        </div>
        <div className="ep-VORow-line ep-VORow-facts">
          <span className="ep-VORow-type">{cell(row.dataproduct_type)}</span>
          <span className="ep-VORow-pos">
            {cell(row.s_ra, 3)}, {cell(row.s_dec, 3)}
          </span>
          <span className="ep-VORow-service">{cell(row.service)}</span>
          {did && (
            <span className="ep-VORow-actions">
              <Button
                small
                minimal
                className="ep-VORow-make"
                title={`Make ${did} available near compute`}
                onClick={e => {
                  e.stopPropagation();
                  void context.makeAvailable([did]);
                }}
              >
                Near
              </Button>
              <Button
                small
                minimal
                className="ep-VORow-open"
                title={`Open ${did} in the notebook`}
                onClick={e => {
                  e.stopPropagation();
                  void context.openInNotebook(did, 'file');
                }}
              >
                Open
              </Button>
            </span>
          )}
        </div>
      </div>
    );
  };

  const chosenRow = selected !== null ? rows[selected] : null;
  return (
    <div className="ep-Panel ep-VOSearch">
      <div className="ep-Panel-header">
        <h2 className="ep-Panel-title">VO Search</h2>
      </div>
      <details className="ep-Services" open={services.length < 8}>
        <summary>
          Services: {chosen.size} of {services.length} chosen
        </summary>
        <div className="ep-Row-form">
          <input
            className="jp-mod-styled"
            value={keywords}
            placeholder="registry keywords (e.g. gamma, radio)"
            aria-label="Registry keywords"
            onChange={e => setKeywords(e.target.value)}
            onKeyDown={e => {
              if (e.key === 'Enter') {
                e.preventDefault();
                findServices(keywords);
              }
            }}
          />
          <Button small onClick={() => findServices(keywords)}>
            Find
          </Button>
        </div>
        <ErrorLine message={registryError} />
        <ul className="ep-ServiceList">
          {services.map(s => (
            <li key={s.url}>
              <label title={s.url}>
                <input
                  type="checkbox"
                  checked={chosen.has(s.url)}
                  onChange={() =>
                    setChosen(c => {
                      const next = new Set(c);
                      if (next.has(s.url)) {
                        next.delete(s.url);
                      } else {
                        next.add(s.url);
                      }
                      return next;
                    })
                  }
                />
                {s.title || s.name} <span className="ep-Muted">({s.kind})</span>
              </label>
            </li>
          ))}
        </ul>
      </details>
      <form className="ep-VOForm" onSubmit={search}>
        <div className="ep-Row-form">
          <Field
            label="Target"
            hint="An object name, resolved to a position when a resolver is reachable"
          >
            <input
              className="jp-mod-styled ep-VO-name"
              value={form.name}
              placeholder="Crab"
              onChange={set('name')}
              onBlur={() => form.name && !form.ra && resolve()}
            />
          </Field>
          <Button
            small
            minimal
            type="button"
            onClick={resolve}
            title="Resolve the name to RA/Dec"
          >
            Resolve
          </Button>
        </div>
        {resolved && <div className="ep-Muted ep-Resolved">{resolved}</div>}
        <div className="ep-Row-form">
          <Field label="RA (°)">
            <input
              className="jp-mod-styled ep-VO-ra"
              value={form.ra}
              inputMode="decimal"
              onChange={set('ra')}
            />
          </Field>
          <Field label="Dec (°)">
            <input
              className="jp-mod-styled ep-VO-dec"
              value={form.dec}
              inputMode="decimal"
              onChange={set('dec')}
            />
          </Field>
          <Field label="Radius (°)">
            <input
              className="jp-mod-styled ep-VO-radius"
              value={form.radius}
              inputMode="decimal"
              onChange={set('radius')}
            />
          </Field>
        </div>
        <div className="ep-Row-form">
          <Field label="From">
            <input
              className="jp-mod-styled"
              type="date"
              value={form.start}
              onChange={set('start')}
            />
          </Field>
          <Field label="To">
            <input
              className="jp-mod-styled"
              type="date"
              value={form.end}
              onChange={set('end')}
            />
          </Field>
        </div>
        <div className="ep-Row-form">
          <Field label="Band min (m)" hint="Wavelength in metres, e.g. 4e-7">
            <input
              className="jp-mod-styled"
              value={form.bandMin}
              onChange={set('bandMin')}
            />
          </Field>
          <Field label="Band max (m)">
            <input
              className="jp-mod-styled"
              value={form.bandMax}
              onChange={set('bandMax')}
            />
          </Field>
        </div>
        <div className="ep-Row-form">
          <Field label="Collection">
            <input
              className="jp-mod-styled"
              value={form.collection}
              onChange={set('collection')}
            />
          </Field>
          <Field label="Product">
            <select
              className="jp-mod-styled"
              value={form.product}
              onChange={set('product')}
            >
              {PRODUCT_TYPES.map(t => (
                <option key={t} value={t}>
                  {t || 'any'}
                </option>
              ))}
            </select>
          </Field>
        </div>
        <Button type="submit" className="ep-VO-search" disabled={searching}>
          <searchIcon.react tag="span" /> {searching ? 'Searching…' : 'Search'}
        </Button>
      </form>
      <ErrorLine message={error} />
      {answer && (
        <div className="ep-VOResults">
          <table className="ep-Table ep-Statuses">
            <caption>
              {rows.length} rows in {answer.seconds.toFixed(1)} s ·{' '}
              {linkedCount} in the lake
            </caption>
            <thead>
              <tr>
                <th scope="col">Service</th>
                <th scope="col">Status</th>
                <th scope="col">Rows</th>
                <th scope="col">Time</th>
              </tr>
            </thead>
            <tbody>
              {answer.statuses.map(s => (
                <tr
                  key={`${s.service.name}-${s.service.url}`}
                  className={`ep-mod-${s.state}`}
                  title={s.message ?? ''}
                >
                  <td>{s.service.title || s.service.name}</td>
                  <td>
                    {s.state}
                    {s.message ? `: ${s.message}` : ''}
                  </td>
                  <td>{s.rows}</td>
                  <td>{s.seconds.toFixed(1)} s</td>
                </tr>
              ))}
            </tbody>
          </table>
          {answer.warnings.map(w => (
            <div key={w} className="ep-Warning">
              {w}
            </div>
          ))}
          <SkyFootprint
            rows={rows}
            position={position}
            radius={num(form.radius) ?? null}
            selected={selected}
            onSelect={setSelected}
          />
          <div className="ep-ListArea ep-VOList">
            <VirtualList
              id="ep-vo-results"
              label="VO results"
              count={rows.length}
              rowHeight={44}
              renderRow={renderRow}
              onFocusRow={setSelected}
              onActivate={i => {
                const did = rows[i]?.lake_did;
                if (typeof did === 'string' && did) {
                  void context.openInNotebook(did, 'file');
                }
              }}
            />
          </div>
          {chosenRow && (
            <dl className="ep-Facts ep-VORowDetails">
              {Object.entries(chosenRow)
                .filter(([, v]) => v !== null && v !== '')
                .slice(0, 24)
                .map(([k, v]) => (
                  <React.Fragment key={k}>
                    <dt>{k}</dt>
                    <dd>{cell(v, 6)}</dd>
                  </React.Fragment>
                ))}
            </dl>
          )}
        </div>
      )}
      <TransfersList transfers={context.transfers.transfers} />
    </div>
  );
}
