/**
 * The same widgets where researchers also run notebooks: Notebook 7 and Voila, each
 * started here on a free loopback port with the widgets notebook and the embedded lake,
 * and stopped by process id. Nothing the pages load may come from beyond this machine
 * (the widgets bundle what they need: no CDN at run time).
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';

import { expect, Page, test } from '@playwright/test';

import { ARTEFACTS, LAKE_DIR } from './helpers';
import { exerciseWidgets, WIDGETS_NOTEBOOK } from './widget-steps';

const VENV_BIN = path.resolve(
  __dirname,
  '..',
  '..',
  '..',
  '..',
  '.venv',
  'bin'
);
const NAME = path.basename(WIDGETS_NOTEBOOK);

test.describe.configure({ mode: 'serial' });

const VOILA_TEMPLATE_LINKS =
  /^https:\/\/cdn\.jsdelivr\.net\/npm\/@fortawesome\/fontawesome-free@[^/]+\/css\/(all|v4-shims)\.min\.css$/;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

interface IServer {
  process: ChildProcess;
  url: string;
  log: string[];
}

/** Start `command` (from the project's venv) and wait until `url` answers. */
async function start(
  command: string,
  args: string[],
  url: string,
  root: string
): Promise<IServer> {
  const log: string[] = [];
  const child = spawn(path.join(VENV_BIN, command), args, {
    cwd: root,
    env: {
      ...process.env,
      ESCAPE_PORTAL_LAKE_DIR: LAKE_DIR,
      PATH: `${VENV_BIN}:${process.env.PATH}`
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
async function stop(server: IServer | undefined): Promise<void> {
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

function rootWithNotebook(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'escape-portal-widgets-'));
  fs.copyFileSync(WIDGETS_NOTEBOOK, path.join(root, NAME));
  return root;
}

/** Record every request the page makes that leaves 127.0.0.1. */
function watchOutside(page: Page): string[] {
  const outside: string[] = [];
  page.on('request', request => {
    const url = new URL(request.url());
    if (
      !['127.0.0.1', 'localhost'].includes(url.hostname) &&
      url.protocol !== 'data:'
    ) {
      outside.push(request.url());
    }
  });
  return outside;
}

test('the widgets render and work in Notebook 7', async ({ page }) => {
  const root = rootWithNotebook();
  const port = await freePort();
  const server = await start(
    'jupyter',
    [
      'notebook',
      '--no-browser',
      '--ip=127.0.0.1',
      `--port=${port}`,
      '--port-retries=0',
      '--allow-root',
      '--IdentityProvider.token=',
      '--ServerApp.password=',
      '--ServerApp.disable_check_xsrf=True',
      '--JupyterNotebookApp.expose_app_in_browser=True',
      `--ServerApp.root_dir=${root}`
    ],
    `http://127.0.0.1:${port}/api/status`,
    root
  );
  try {
    const outside = watchOutside(page);
    await page.goto(`http://127.0.0.1:${port}/notebooks/${NAME}`);
    await page.waitForFunction(
      () => {
        const app = (window as any).jupyterapp;
        const context = app?.shell?.currentWidget?.sessionContext;
        return (
          !!context?.session?.kernel && context.kernelDisplayStatus === 'idle'
        );
      },
      undefined,
      { timeout: 120000 }
    );
    await page.evaluate(async () => {
      await (window as any).jupyterapp.commands.execute(
        'notebook:run-all-cells'
      );
    });
    await exerciseWidgets(page, 'notebook7');
    await page.screenshot({
      path: path.join(ARTEFACTS, 'widgets-notebook7.png'),
      fullPage: true
    });
    expect(outside).toEqual([]);
  } finally {
    await stop(server);
  }
});

test('the widgets notebook is a Voila dashboard', async ({ page }) => {
  const root = rootWithNotebook();
  const port = await freePort();
  const server = await start(
    'voila',
    [
      NAME,
      '--no-browser',
      '--Voila.ip=127.0.0.1',
      `--port=${port}`,
      '--Voila.token='
    ],
    `http://127.0.0.1:${port}/`,
    root
  );
  try {
    const outside = watchOutside(page);
    await page.goto(`http://127.0.0.1:${port}/`, { timeout: 120000 });
    // Voila shows the outputs only: the widgets, and no code.
    await exerciseWidgets(page, 'voila');
    await expect(page.getByText('browser = LakeBrowser(lake)')).toHaveCount(0);
    await page.screenshot({
      path: path.join(ARTEFACTS, 'widgets-voila.png'),
      fullPage: true
    });
    // Voila's own page template (voila/templates/lab/index.html.j2) links Font Awesome
    // from a CDN, although its bundle carries it too: that is Voila's, not the widgets'.
    expect(outside.filter(url => !VOILA_TEMPLATE_LINKS.test(url))).toEqual([]);
  } finally {
    await stop(server);
  }
});
