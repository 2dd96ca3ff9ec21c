/**
 * Typed calls of the REST API. Widgets use these and never build a URL themselves.
 */
import { didPath, QueryValue, requestAPI } from './request';
import {
  DIDType,
  IContents,
  IDIDDetails,
  IDIDInfo,
  IDownloadAnswer,
  IInstances,
  IMakeAvailableAnswer,
  IPage,
  IPlacement,
  IRegistryAnswer,
  IReplicas,
  IResolved,
  IRuleProgress,
  IRules,
  IVOQuery,
  IVOSearchAnswer,
  IWatch,
  IWhoAmI
} from './tokens';

/** How a call reaches the server (replaced by a fake in the tests). */
export type Requester = <T>(
  path: string,
  init?: RequestInit,
  query?: Record<string, QueryValue>
) => Promise<T>;

/** What a DID search asks for. */
export interface IDIDSearch {
  scope: string;
  pattern?: string;
  type?: DIDType;
  filters?: string[];
}

function postJSON(body: unknown): RequestInit {
  return {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json' }
  };
}

/** The ESCAPE Portal REST API. */
export class PortalAPI {
  constructor(private readonly request: Requester = requestAPI) {}

  instances(): Promise<IInstances> {
    return this.request<IInstances>('instances');
  }

  /** Work with another configured instance (reached first; on failure none changes). */
  useInstance(name: string): Promise<IInstances> {
    return this.request<IInstances>('instances/active', postJSON({ name }));
  }

  whoami(): Promise<IWhoAmI> {
    return this.request<IWhoAmI>('whoami');
  }

  async scopes(): Promise<string[]> {
    const answer = await this.request<{ scopes: string[] }>('scopes');
    return answer.scopes;
  }

  /** One page of the DIDs of a scope matching a pattern, a type and metadata filters. */
  dids(
    search: IDIDSearch,
    limit: number,
    cursor: string | null
  ): Promise<IPage<IDIDInfo>> {
    return this.request<IPage<IDIDInfo>>('dids', undefined, {
      scope: search.scope,
      pattern: search.pattern || '*',
      type: search.type || 'all',
      filter: search.filters ?? [],
      limit,
      cursor
    });
  }

  details(did: string): Promise<IDIDDetails> {
    return this.request<IDIDDetails>(didPath(did));
  }

  /** One page of what a dataset or container holds. */
  contents(
    did: string,
    limit: number,
    cursor: string | null
  ): Promise<IContents> {
    return this.request<IContents>(didPath(did, 'contents'), undefined, {
      limit,
      cursor
    });
  }

  replicas(did: string): Promise<IReplicas> {
    return this.request<IReplicas>(didPath(did, 'replicas'));
  }

  rules(did: string): Promise<IRules> {
    return this.request<IRules>(didPath(did, 'rules'));
  }

  placement(did: string): Promise<IPlacement> {
    return this.request<IPlacement>(didPath(did, 'placement'));
  }

  makeAvailable(
    dids: string[],
    lifetime?: number | null,
    comment?: string
  ): Promise<IMakeAvailableAnswer> {
    const body: Record<string, unknown> = { dids };
    if (lifetime !== undefined) {
      body.lifetime = lifetime;
    }
    if (comment) {
      body.comment = comment;
    }
    return this.request<IMakeAvailableAnswer>('make-available', postJSON(body));
  }

  progress(ruleId: string): Promise<IRuleProgress> {
    return this.request<IRuleProgress>(
      `rules/${encodeURIComponent(ruleId)}/progress`
    );
  }

  /** The user's watches (run in kernels or by `escape-portal watch run`). */
  async watches(): Promise<IWatch[]> {
    const answer = await this.request<{ watches: IWatch[] }>('watches');
    return answer.watches;
  }

  /** Stop a watch wherever it runs; what it processed is kept. */
  stopWatch(name: string): Promise<IWatch> {
    return this.request<IWatch>(
      `watches/${encodeURIComponent(name)}/stop`,
      postJSON({})
    );
  }

  download(did: string): Promise<IDownloadAnswer> {
    return this.request<IDownloadAnswer>('download', postJSON({ did }));
  }

  registry(
    keywords: string[] = [],
    servicetypes: string[] = [],
    maxrec?: number
  ): Promise<IRegistryAnswer> {
    return this.request<IRegistryAnswer>('vo/registry', undefined, {
      keywords,
      servicetype: servicetypes,
      maxrec
    });
  }

  voSearch(query: IVOQuery): Promise<IVOSearchAnswer> {
    return this.request<IVOSearchAnswer>('vo/search', postJSON(query));
  }

  resolve(name: string): Promise<IResolved> {
    return this.request<IResolved>('vo/resolve', undefined, { name });
  }
}

/**
 * Every item of a cursor-paged listing, page after page, up to `max` items.
 *
 * @param fetchPage - reads the page at a cursor (`null` is the first)
 */
export async function collectPages<T>(
  fetchPage: (cursor: string | null) => Promise<IPage<T>>,
  max = Infinity
): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | null = null;
  const seen = new Set<string>();
  do {
    const page: IPage<T> = await fetchPage(cursor);
    items.push(...page.items);
    cursor = page.next_cursor;
    if (cursor !== null) {
      if (seen.has(cursor)) {
        break; // a server that repeats a cursor would loop for ever
      }
      seen.add(cursor);
    }
  } while (cursor !== null && items.length < max);
  return items.slice(0, max);
}
