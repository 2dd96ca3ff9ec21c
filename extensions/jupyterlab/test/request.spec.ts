import { ServerConnection } from '@jupyterlab/services';

import {
  apiURL,
  didPath,
  errorFromAnswer,
  PortalError,
  queryString,
  requestAPI,
  splitDID,
  userMessage
} from '../src/request';

const settings = ServerConnection.makeSettings({
  baseUrl: 'http://localhost:8888/user/ana/'
});

function answer(status: number, body: string): Response {
  return {
    ok: status >= 200 && status < 300,
    status,
    text: () => Promise.resolve(body)
  } as unknown as Response;
}

describe('URL building', () => {
  it('joins the base URL, the API prefix and the path', () => {
    expect(apiURL('whoami', {}, settings)).toBe(
      'http://localhost:8888/user/ana/escape-portal/api/whoami'
    );
  });

  it('puts a DID into one path segment each for scope and name', () => {
    expect(didPath('cta:crab-2024.dl3', 'replicas')).toBe(
      'dids/cta/crab-2024.dl3/replicas'
    );
    expect(didPath('user.jdoe:runs/2024/a b.fits')).toBe(
      'dids/user.jdoe/runs%2F2024%2Fa%20b.fits'
    );
  });

  it('keeps colons after the first in the name', () => {
    expect(splitDID('cta:a:b')).toEqual({ scope: 'cta', name: 'a:b' });
  });

  it('refuses text that is not a DID, saying how to write one', () => {
    expect(() => splitDID('crab')).toThrow(PortalError);
    expect(() => splitDID(':x')).toThrow(/not a data identifier/);
    expect(() => splitDID('cta:')).toThrow(
      expect.objectContaining({ hint: expect.stringMatching(/scope:name/) })
    );
  });

  it('repeats list parameters and leaves out empty ones', () => {
    expect(
      queryString({
        scope: 'cta',
        pattern: '*crab*',
        filter: ['target=Crab', 'ra>80'],
        cursor: null,
        type: undefined,
        empty: '',
        limit: 100
      })
    ).toBe(
      '?scope=cta&pattern=*crab*&filter=target%3DCrab&filter=ra%3E80&limit=100'
    );
    expect(queryString({})).toBe('');
    expect(queryString({ filter: [] })).toBe('');
  });
});

describe('errors', () => {
  it("turns the server's error JSON into a message with its hint", () => {
    const error = errorFromAnswer(404, {
      error: {
        type: 'NotFound',
        message: 'cta:nothing does not exist.',
        hint: 'Check the scope and the name.'
      }
    });
    expect(error.status).toBe(404);
    expect(error.type).toBe('NotFound');
    expect(error.userMessage).toBe(
      'cta:nothing does not exist. Check the scope and the name.'
    );
    expect(userMessage(error)).toBe(error.userMessage);
  });

  it("reads Tornado's own error JSON", () => {
    const error = errorFromAnswer(403, { message: 'Forbidden', reason: null });
    expect(error.message).toBe('Forbidden');
    expect(error.hint).toMatch(/Log in/);
  });

  it('says the server extension may be missing on a bare 404', () => {
    const error = errorFromAnswer(
      404,
      undefined,
      'http://x/escape-portal/api/whoami'
    );
    expect(error.message).toMatch(/not there/);
    expect(error.hint).toMatch(/jupyter server extension list/);
  });

  it('names the status and where to look on other failures', () => {
    const error = errorFromAnswer(502, 'Bad gateway', 'http://x/api');
    expect(error.message).toMatch(/HTTP 502 for http:\/\/x\/api/);
    expect(error.hint).toMatch(/log/);
  });

  it('gives messages for plain errors and other values', () => {
    expect(userMessage(new Error('boom'))).toBe('boom');
    expect(userMessage('text')).toBe('text');
  });
});

describe('requestAPI', () => {
  const makeRequest = jest.spyOn(ServerConnection, 'makeRequest');
  afterEach(() => makeRequest.mockReset());

  it('returns the JSON answer and sends the request as given', async () => {
    makeRequest.mockResolvedValue(answer(200, '{"scopes": ["cta"]}'));
    const data = await requestAPI<{ scopes: string[] }>(
      'scopes',
      { method: 'GET' },
      { limit: 5 },
      settings
    );
    expect(data.scopes).toEqual(['cta']);
    expect(makeRequest).toHaveBeenCalledWith(
      'http://localhost:8888/user/ana/escape-portal/api/scopes?limit=5',
      { method: 'GET' },
      settings
    );
  });

  it("throws the server's error", async () => {
    makeRequest.mockResolvedValue(
      answer(
        400,
        '{"error": {"type": "InvalidRequest", "message": "limit=0 is out of range.", "hint": "Use 1 to 10000."}}'
      )
    );
    await expect(
      requestAPI('dids', {}, { limit: 0 }, settings)
    ).rejects.toMatchObject({
      status: 400,
      type: 'InvalidRequest',
      userMessage: 'limit=0 is out of range. Use 1 to 10000.'
    });
  });

  it('says so when an ok answer is not JSON', async () => {
    makeRequest.mockResolvedValue(answer(200, '<html>login</html>'));
    await expect(requestAPI('whoami', {}, {}, settings)).rejects.toThrow(
      /not JSON/
    );
  });

  it('reports a server that cannot be reached', async () => {
    makeRequest.mockRejectedValue(new TypeError('Failed to fetch'));
    const failure = requestAPI('whoami', {}, {}, settings);
    await expect(failure).rejects.toBeInstanceOf(ServerConnection.NetworkError);
    await failure.catch(reason =>
      expect(userMessage(reason)).toMatch(/cannot be reached/)
    );
  });

  it('accepts an empty answer', async () => {
    makeRequest.mockResolvedValue(answer(204, ''));
    await expect(requestAPI('x', {}, {}, settings)).resolves.toBeUndefined();
  });
});
