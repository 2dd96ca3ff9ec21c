/**
 * The same widgets where researchers also run notebooks: Notebook 7 and Voila, each
 * started here on a free loopback port with the widgets notebook and the embedded lake,
 * and stopped by process id. Nothing the pages load may come from beyond this machine
 * (the widgets bundle what they need: no CDN at run time).
 */
import * as path from 'path';

import { expect, Page, test } from '@playwright/test';

import { ARTEFACTS } from './helpers';
import { freePort, rootWith, start, startJupyter, stop } from './servers';
import { exerciseWidgets, WIDGETS_NOTEBOOK } from './widget-steps';

const NAME = path.basename(WIDGETS_NOTEBOOK);

test.describe.configure({ mode: 'serial' });

const VOILA_TEMPLATE_LINKS =
  /^https:\/\/cdn\.jsdelivr\.net\/npm\/@fortawesome\/fontawesome-free@[^/]+\/css\/(all|v4-shims)\.min\.css$/;

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
  const root = rootWith(WIDGETS_NOTEBOOK);
  const server = await startJupyter('notebook', root);
  const port = server.port;
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
  const root = rootWith(WIDGETS_NOTEBOOK);
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
