/**
 * The Data Lake side panel: who you are on which instance, a search box, a browser from
 * scopes down to files (virtualized, read page by page), the details of the focused DID,
 * the make-available requests of this session, and the user's watches.
 */
import * as React from 'react';
import {
  Button,
  fileIcon,
  folderIcon,
  listIcon,
  refreshIcon,
  searchIcon
} from '@jupyterlab/ui-components';

import { IPortalContext } from '../context';
import { formatBytes, formatDuration } from '../models/format';
import { PagedListing } from '../models/listing';
import { parseSearch } from '../models/search';
import { userMessage } from '../request';
import { IDIDInfo, IInstances, IWhoAmI } from '../tokens';
import { DetailsView } from './DetailsView';
import { ErrorLine, TransfersList, useSignal } from './common';
import { VirtualList } from './VirtualList';
import { WatchesList } from './WatchesList';

/** A row of the browser: a scope, or a DID. */
export type BrowseRow =
  { kind: 'scope'; scope: string } | ({ kind: 'did' } & IDIDInfo);

/** Where the browser is: the scopes, a scope, inside a DID, or a search. */
export type Location =
  | { kind: 'scopes' }
  | { kind: 'scope'; scope: string }
  | { kind: 'did'; did: string; type: string | null }
  | { kind: 'search'; text: string };

const ROW_HEIGHT = 26;

function rowDID(row: BrowseRow): string | null {
  return row.kind === 'did' ? `${row.scope}:${row.name}` : null;
}

function listingFor(
  context: IPortalContext,
  location: Location
): PagedListing<BrowseRow> {
  const { api } = context;
  const size = context.settings().pageSize;
  const asRows = (items: IDIDInfo[]): BrowseRow[] =>
    items.map(i => ({ kind: 'did' as const, ...i }));
  switch (location.kind) {
    case 'scopes':
      return new PagedListing<BrowseRow>(
        async () => ({
          items: (await api.scopes())
            .sort()
            .map(scope => ({ kind: 'scope' as const, scope })),
          next_cursor: null
        }),
        size
      );
    case 'scope':
      return new PagedListing<BrowseRow>(async (cursor, limit) => {
        const page = await api.dids(
          { scope: location.scope, pattern: '*', type: 'collection' },
          limit,
          cursor
        );
        return { items: asRows(page.items), next_cursor: page.next_cursor };
      }, size);
    case 'did':
      return new PagedListing<BrowseRow>(async (cursor, limit) => {
        const page = await api.contents(location.did, limit, cursor);
        return { items: asRows(page.items), next_cursor: page.next_cursor };
      }, size);
    case 'search': {
      const query = parseSearch(location.text);
      return new PagedListing<BrowseRow>(async (cursor, limit) => {
        if (query.problems.length) {
          throw new Error(query.problems.join(' '));
        }
        const page = await api.dids(query, limit, cursor);
        return { items: asRows(page.items), next_cursor: page.next_cursor };
      }, size);
    }
  }
}

function Identity(props: {
  context: IPortalContext;
  revision: number;
  onInstanceChanged: () => void;
}): JSX.Element {
  const [who, setWho] = React.useState<IWhoAmI | null>(null);
  const [instances, setInstances] = React.useState<IInstances | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  React.useEffect(() => {
    let live = true;
    props.context.api
      .instances()
      .then(i => live && setInstances(i))
      .catch(() => undefined);
    props.context.api
      .whoami()
      .then(w => {
        if (live) {
          setWho(w);
          setError(null);
        }
      })
      .catch(reason => live && setError(userMessage(reason)));
    return () => {
      live = false;
    };
  }, [props.context, props.revision]);
  const token = who
    ? who.token_expired
      ? 'token expired'
      : who.token_renewable
        ? 'token renewed automatically'
        : who.token_valid_seconds !== null
          ? `token valid ${formatDuration(who.token_valid_seconds)}`
          : 'token valid'
    : '';
  const others = instances ? instances.instances.length : 0;
  const [switching, setSwitching] = React.useState(false);
  const choose = (name: string): void => {
    setSwitching(true);
    setError(null);
    props.context.api
      .useInstance(name)
      .then(answer => {
        setInstances(answer);
        props.onInstanceChanged();
      })
      .catch(reason => setError(userMessage(reason)))
      .finally(() => setSwitching(false));
  };
  return (
    <div className="ep-Identity" aria-live="polite">
      {who ? (
        <>
          <span className="ep-Identity-instance" title={who.rucio_host}>
            {who.instance}
          </span>
          <span className="ep-Identity-account">
            {who.account} ({who.auth_type})
          </span>
          <span
            className={`ep-Identity-token${
              who.token_expired || who.token_notice ? ' ep-mod-expired' : ''
            }`}
            title={who.token_notice ?? undefined}
          >
            {token}
          </span>
          {instances && others > 1 && (
            <select
              className="ep-Identity-choose jp-mod-styled"
              aria-label="Rucio instance"
              title="Work with another configured Rucio instance"
              value={instances.active ?? who.instance}
              disabled={switching}
              onChange={event => choose(event.target.value)}
            >
              {instances.instances.map(i => (
                <option key={i.name} value={i.name}>
                  {i.name}
                </option>
              ))}
            </select>
          )}
        </>
      ) : (
        !error && <span className="ep-Muted">Connecting to the lake…</span>
      )}
      <ErrorLine message={error} />
    </div>
  );
}

export function DataLakePanel(props: { context: IPortalContext }): JSX.Element {
  const { context } = props;
  const [trail, setTrail] = React.useState<Location[]>([{ kind: 'scopes' }]);
  const location = trail[trail.length - 1];
  const [revision, setRevision] = React.useState(0);
  const listing = React.useMemo(
    () => listingFor(context, location),
    [context, location, revision]
  );
  const [text, setText] = React.useState('');
  const [selected, setSelected] = React.useState<Set<string>>(new Set());
  const [focused, setFocused] = React.useState<{
    did: string;
    type: string | null;
  } | null>(null);
  const [dataRevision, setDataRevision] = React.useState(0);
  useSignal(listing.changed);
  useSignal(context.transfers.changed);

  React.useEffect(() => {
    void listing.loadMore();
    return () => listing.dispose();
  }, [listing]);

  // When a transfer finishes, the focused DID's replicas and rules have changed.
  const available = context.transfers.transfers.filter(
    t => t.state === 'available'
  ).length;
  React.useEffect(() => setDataRevision(r => r + 1), [available]);

  const onVisibleEnd = React.useCallback(
    (last: number) =>
      void listing.ensureLoaded(
        last,
        Math.max(50, context.settings().pageSize / 2)
      ),
    [listing, context]
  );

  const go = (next: Location) => {
    setTrail(t => [...t, next]);
  };
  const enter = (row: BrowseRow) => {
    if (row.kind === 'scope') {
      go({ kind: 'scope', scope: row.scope });
    } else if (row.type === 'file') {
      setFocused({ did: `${row.scope}:${row.name}`, type: row.type });
    } else {
      const did = `${row.scope}:${row.name}`;
      setFocused({ did, type: row.type });
      go({ kind: 'did', did, type: row.type });
    }
  };
  const toggle = (row: BrowseRow) => {
    const did = rowDID(row);
    if (!did) {
      return;
    }
    setSelected(s => {
      const next = new Set(s);
      if (next.has(did)) {
        next.delete(did);
      } else {
        next.add(did);
      }
      return next;
    });
  };
  const search = (event?: React.FormEvent) => {
    event?.preventDefault();
    const trimmed = text.trim();
    if (!trimmed) {
      return;
    }
    const scope =
      location.kind === 'scope'
        ? location.scope
        : location.kind === 'did'
          ? location.did.split(':')[0]
          : '';
    const full =
      trimmed.includes(':') || !scope ? trimmed : `${scope}:${trimmed}`;
    go({ kind: 'search', text: full });
  };

  const crumbs = trail.map((loc, i) => {
    const label =
      loc.kind === 'scopes'
        ? 'Scopes'
        : loc.kind === 'scope'
          ? loc.scope
          : loc.kind === 'did'
            ? loc.did.slice(loc.did.indexOf(':') + 1)
            : `Search “${loc.text}”`;
    const last = i === trail.length - 1;
    return (
      <React.Fragment key={i}>
        {i > 0 && <span className="ep-Crumbs-sep">›</span>}
        <button
          className={`ep-Crumb${last ? ' ep-mod-current' : ''}`}
          aria-current={last ? 'location' : undefined}
          onClick={() => setTrail(t => t.slice(0, i + 1))}
        >
          {label}
        </button>
      </React.Fragment>
    );
  });

  const items = listing.items;
  const renderRow = (index: number) => {
    const row = items[index];
    if (!row) {
      return null;
    }
    if (row.kind === 'scope') {
      return (
        <div className="ep-Row" data-kind="scope" data-name={row.scope}>
          <folderIcon.react className="ep-Row-icon" tag="span" />
          <span className="ep-Row-name">{row.scope}</span>
        </div>
      );
    }
    const did = `${row.scope}:${row.name}`;
    const Icon =
      row.type === 'file'
        ? fileIcon
        : row.type === 'container'
          ? folderIcon
          : listIcon;
    return (
      <div className="ep-Row" data-kind={row.type ?? 'did'} data-did={did}>
        <input
          type="checkbox"
          className="ep-Row-check"
          tabIndex={-1}
          aria-label={`Select ${did}`}
          checked={selected.has(did)}
          onChange={() => toggle(row)}
          onClick={e => e.stopPropagation()}
        />
        <Icon.react className="ep-Row-icon" tag="span" />
        <span className="ep-Row-name" title={did}>
          {row.name}
        </span>
        <span className="ep-Row-size">
          {row.bytes
            ? formatBytes(row.bytes)
            : row.type !== 'file'
              ? row.type
              : ''}
        </span>
      </div>
    );
  };

  const selection = [...selected];
  const footer = listing.loading ? (
    <div className="ep-Muted ep-Loading">Loading…</div>
  ) : !listing.complete && items.length ? (
    <div className="ep-Muted">
      {items.length.toLocaleString('en-US')} shown, more on scroll
    </div>
  ) : null;

  return (
    <div className="ep-Panel ep-DataLake">
      <div className="ep-Panel-header">
        <h2 className="ep-Panel-title">Data Lake</h2>
        <Button
          minimal
          small
          className="ep-Refresh"
          title="Refresh"
          aria-label="Refresh"
          onClick={() => {
            setRevision(r => r + 1);
            setDataRevision(r => r + 1);
          }}
        >
          <refreshIcon.react tag="span" />
        </Button>
      </div>
      <Identity
        context={context}
        revision={revision}
        onInstanceChanged={() => {
          // Another lake: back to its scopes, everything read again.
          setTrail([{ kind: 'scopes' }]);
          setSelected(new Set());
          setFocused(null);
          setRevision(r => r + 1);
          setDataRevision(r => r + 1);
        }}
      />
      <form className="ep-Search" onSubmit={search} role="search">
        <input
          className="ep-Search-input jp-mod-styled"
          type="search"
          value={text}
          placeholder="cta:*crab* type:dataset target=Crab ra>80"
          aria-label="Search the lake: scope:pattern (wildcard *), type:file|dataset|container, metadata filters key=value, key>number"
          title="scope:pattern (wildcard *), type:file|dataset|container|collection, filters key=value, key>number"
          onChange={e => setText(e.target.value)}
        />
        <Button
          type="submit"
          small
          className="ep-Search-go"
          aria-label="Search"
        >
          <searchIcon.react tag="span" />
        </Button>
      </form>
      <nav className="ep-Crumbs" aria-label="Where you are">
        {crumbs}
      </nav>
      <ErrorLine message={listing.error} />
      <div className="ep-ListArea">
        <VirtualList
          id="ep-datalake-list"
          label="Lake contents"
          count={items.length}
          rowHeight={ROW_HEIGHT}
          renderRow={renderRow}
          onVisibleEnd={onVisibleEnd}
          onActivate={i => items[i] && enter(items[i])}
          onToggle={i => items[i] && toggle(items[i])}
          onFocusRow={i => {
            const row = items[i];
            if (row && row.kind === 'did') {
              setFocused({ did: `${row.scope}:${row.name}`, type: row.type });
            }
          }}
          footer={footer}
        />
        {!listing.loading && listing.complete && items.length === 0 && (
          <div className="ep-Muted ep-Empty">Nothing here.</div>
        )}
      </div>
      {selection.length > 0 && (
        <div className="ep-Selection" aria-label="Selection">
          <span>{selection.length} selected</span>
          <Button small onClick={() => void context.makeAvailable(selection)}>
            Make available
          </Button>
          <Button
            small
            minimal
            onClick={() => void context.attachToNotebook(selection)}
          >
            Attach
          </Button>
          <Button small minimal onClick={() => setSelected(new Set())}>
            Clear
          </Button>
        </div>
      )}
      <div className="ep-Lower">
        {focused && (
          <DetailsView
            context={context}
            did={focused.did}
            revision={dataRevision}
          />
        )}
        <TransfersList transfers={context.transfers.transfers} />
        <WatchesList api={context.api} revision={revision} />
      </div>
    </div>
  );
}
