/**
 * The one way the extension talks to its server extension: URLs are built here, answers
 * are parsed here, and the server's error JSON becomes a message the user can act on.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** Where the REST API lives, below the Jupyter server's base URL. */
export const API_PREFIX = 'escape-portal/api';

/** A query value: lists become repeated parameters; empty values are left out. */
export type QueryValue =
  string | number | boolean | null | undefined | Array<string | number>;

/**
 * The API path of a DID, its name percent-encoded as one segment (a `/` in a name
 * becomes `%2F`, as the server's routes expect).
 */
export function didPath(did: string, ...rest: string[]): string {
  const { scope, name } = splitDID(did);
  return ['dids', scope, name, ...rest].map(encodeURIComponent).join('/');
}

/** `scope:name` into its parts; throws on text that is not a DID. */
export function splitDID(did: string): { scope: string; name: string } {
  const colon = did.indexOf(':');
  if (colon <= 0 || colon === did.length - 1) {
    throw new PortalError(
      `"${did}" is not a data identifier.`,
      'Write it as scope:name, e.g. cta:crab-2024.dl3.',
      0,
      'InvalidDID'
    );
  }
  return { scope: did.slice(0, colon), name: did.slice(colon + 1) };
}

/** The query string (with its `?`, or empty) of `query`, in a stable order. */
export function queryString(query: Record<string, QueryValue> = {}): string {
  const parts: string[] = [];
  for (const key of Object.keys(query)) {
    const value = query[key];
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) {
      if (v === undefined || v === null || v === '') {
        continue;
      }
      parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(String(v))}`);
    }
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

/** The full URL of an API path for the given server settings. */
export function apiURL(
  path: string,
  query: Record<string, QueryValue> = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): string {
  return URLExt.join(settings.baseUrl, API_PREFIX, path) + queryString(query);
}

/** An error of the portal, with what the user needs to act on it. */
export class PortalError extends Error {
  constructor(
    message: string,
    readonly hint: string = '',
    readonly status: number = 0,
    readonly type: string = 'Error'
  ) {
    super(message);
    this.name = 'PortalError';
  }

  /** The message and the hint, as one text for a notification or an error line. */
  get userMessage(): string {
    return this.hint ? `${this.message} ${this.hint}` : this.message;
  }
}

/**
 * The error of an answer that was not ok: the server's `{"error": {type, message, hint}}`
 * when it sent one, else a message made from the status.
 */
export function errorFromAnswer(
  status: number,
  body: unknown,
  url = ''
): PortalError {
  const error =
    body && typeof body === 'object' && 'error' in body
      ? (body as { error: unknown }).error
      : undefined;
  if (error && typeof error === 'object') {
    const e = error as { type?: unknown; message?: unknown; hint?: unknown };
    if (typeof e.message === 'string' && e.message) {
      return new PortalError(
        e.message,
        typeof e.hint === 'string' ? e.hint : '',
        status,
        typeof e.type === 'string' ? e.type : 'Error'
      );
    }
  }
  // Tornado's own errors are `{"message": ..., "reason": ...}`.
  if (body && typeof body === 'object' && 'message' in body) {
    const message = (body as { message: unknown }).message;
    if (typeof message === 'string' && message) {
      return new PortalError(
        message,
        hintForStatus(status),
        status,
        'HTTPError'
      );
    }
  }
  if (status === 404) {
    return new PortalError(
      `The ESCAPE Portal API is not there (${url || 'HTTP 404'}).`,
      'Is the escape_portal server extension enabled? Check `jupyter server extension list`.',
      status,
      'NotFound'
    );
  }
  return new PortalError(
    `The ESCAPE Portal server answered HTTP ${status}${url ? ` for ${url}` : ''}.`,
    hintForStatus(status),
    status,
    'HTTPError'
  );
}

function hintForStatus(status: number): string {
  if (status === 401 || status === 403) {
    return 'Log in to Jupyter again: your session may have expired.';
  }
  if (status >= 500) {
    return "The Jupyter server's log has the details.";
  }
  return '';
}

/** Any thrown value as the message to show the user. */
export function userMessage(reason: unknown): string {
  if (reason instanceof PortalError) {
    return reason.userMessage;
  }
  if (reason instanceof ServerConnection.NetworkError) {
    return `The Jupyter server cannot be reached: ${reason.message}`;
  }
  if (reason instanceof Error) {
    return reason.message;
  }
  return String(reason);
}

/**
 * Call the REST API and return its JSON answer.
 *
 * @param path - below `/escape-portal/api/`, e.g. `didPath(did, 'replicas')`
 * @param init - the request (method, body); a JSON body is sent as is
 * @param query - query parameters
 * @param settings - the server connection (default: the page's)
 */
export async function requestAPI<T>(
  path: string,
  init: RequestInit = {},
  query: Record<string, QueryValue> = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = apiURL(path, query, settings);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: unknown = undefined;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      if (response.ok) {
        throw new PortalError(
          `The ESCAPE Portal server sent something that is not JSON for ${url}.`,
          'Is a proxy in between? Reload the page.',
          response.status,
          'BadAnswer'
        );
      }
    }
  }
  if (!response.ok) {
    throw errorFromAnswer(response.status, data, url);
  }
  return data as T;
}
