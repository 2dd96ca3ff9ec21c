/**
 * Jupyter servers the UI tests start themselves (Notebook 7, Voila, a plain JupyterLab):
 * on a free loopback port, from the project's venv, with the embedded test lake, each in
 * its own process group so that it is stopped with its kernels.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';

import { LAKE_DIR } from './helpers';

export const VENV_BIN = path.resolve(
  __dirname,
  '..',
  '..',
  '..',
  '..',
  '.venv',
  'bin'
);

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

export interface IServer {
  process: ChildProcess;
  url: string;
  log: string[];
}

/** Start `command` (from the project's venv) and wait until `url` answers. */
export async function start(
  command: string,
  args: string[],
  url: string,
  root: string,
  env: Record<string, string> = {}
): Promise<IServer> {
  const log: string[] = [];
  const child = spawn(path.join(VENV_BIN, command), args, {
    cwd: root,
    env: {
      ...process.env,
      ESCAPE_PORTAL_LAKE_DIR: LAKE_DIR,
      PATH: `${VENV_BIN}:${process.env.PATH}`,
      ...env
    },
    detached: true, // its own process group: stopped with its kernels
    stdio: ['ignore', 'pipe', 'pipe']
  });
  child.stdout?.on('data', data => log.push(String(data)));
  child.stderr?.on('data', data => log.push(String(data)));
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`${command} exited: ${log.join('').slice(-2000)}`);
    }
    try {
      const answer = await fetch(url, { signal: AbortSignal.timeout(2000) });
      if (answer.status < 500) {
        return { process: child, url, log };
      }
    } catch {
      // not listening yet
    }
    await new Promise(resolve => setTimeout(resolve, 300));
  }
  await stop({ process: child, url, log });
  throw new Error(`${command} did not answer at ${url} within 60 s`);
}

/** Stop the server's process group (the server and its kernels) and wait for it. */
export async function stop(server: IServer | undefined): Promise<void> {
  const child = server?.process;
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) {
    return;
  }
  const exited = new Promise(resolve => child.once('exit', resolve));
  const signal = (name: NodeJS.Signals): void => {
    try {
      process.kill(-child.pid!, name);
    } catch {
      // already gone
    }
  };
  signal('SIGTERM');
  const timer = new Promise(resolve => setTimeout(resolve, 10000, 'timeout'));
  if ((await Promise.race([exited, timer])) === 'timeout') {
    signal('SIGKILL');
    await exited;
  }
}

/** A new temporary folder holding copies of `files`. */
export function rootWith(...files: string[]): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'escape-portal-ui-'));
  for (const file of files) {
    fs.copyFileSync(file, path.join(root, path.basename(file)));
  }
  return root;
}

/**
 * Start a Jupyter front end of the venv (`lab`, `notebook`) on a free loopback port,
 * without token or password (a test server), serving `root`, its app object exposed to
 * the page as `window.jupyterapp`.
 */
export async function startJupyter(
  app: 'lab' | 'notebook',
  root: string,
  extra: string[] = [],
  env: Record<string, string> = {}
): Promise<IServer & { port: number }> {
  const port = await freePort();
  const expose = app === 'lab' ? 'LabApp' : 'JupyterNotebookApp';
  const server = await start(
    'jupyter',
    [
      app,
      '--no-browser',
      '--ip=127.0.0.1',
      `--port=${port}`,
      '--port-retries=0',
      '--allow-root',
      '--IdentityProvider.token=',
      '--ServerApp.password=',
      '--ServerApp.disable_check_xsrf=True',
      `--${expose}.expose_app_in_browser=True`,
      `--ServerApp.root_dir=${root}`,
      ...extra
    ],
    `http://127.0.0.1:${port}/api/status`,
    root,
    env
  );
  return { ...server, port };
}
