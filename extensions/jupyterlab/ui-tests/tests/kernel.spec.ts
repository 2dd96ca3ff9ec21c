/**
 * DIDs attached to a notebook are bound in its kernel again after the kernel restarts,
 * without re-running the cell that attached them.
 *
 * The restart here is the server's automatic one after the kernel died (as when it runs
 * out of memory). A restart from the Kernel menu is tested in restart-menu.spec.ts, on a
 * JupyterLab of its own: in Galata's harness nothing runs in a kernel after a menu
 * restart (not even `2+2`), with or without this extension.
 */
import * as path from 'path';

import { expect, test } from '@jupyterlab/galata';

import { ARTEFACTS, attachAndRun, runActiveCell } from './helpers';

// A file of the sample lake that is near compute from the start (CERN-DISK).
const FILE = 'cta:crab-2024.sky.0001.fits';
const VARIABLE = 'crab_2024_sky_0001';

test('attached DIDs are bound again after the kernel restarts', async ({
  page,
  tmpPath
}) => {
  await page.notebook.createNew(`${tmpPath}-attached.ipynb`);
  const first = await attachAndRun(page, [FILE]);
  expect(first).toContain('PosixPath(');

  // The kernel dies; the server restarts it.
  const statuses: string[] = [];
  await page.exposeFunction('epStatus', (s: string) => statuses.push(s));
  await page.evaluate(() => {
    const context = (window as any).jupyterapp.shell.currentWidget
      .sessionContext;
    context.statusChanged.connect((_: unknown, status: string) =>
      (window as any).epStatus(status)
    );
  });
  await page.notebook.addCell('code', 'import os\nos._exit(1)');
  await page.evaluate(() => {
    void (window as any).jupyterapp.commands.execute('notebook:run-cell');
  });
  await expect.poll(() => statuses).toContain('autorestarting');
  // JupyterLab tells the researcher the kernel restarted.
  const dialog = page.locator('.jp-Dialog');
  if (await dialog.isVisible()) {
    await dialog.locator('.jp-mod-accept').click();
  }

  // A new cell, in the new kernel, finds the variable bound again.
  await page.notebook.addCell(
    'code',
    `print(type(${VARIABLE}).__name__, ${VARIABLE}.name)`
  );
  const after = await runActiveCell(page);
  expect(after).not.toContain('NameError');
  expect(after).toContain('crab-2024.sky.0001.fits');
  await page.screenshot({
    path: path.join(ARTEFACTS, 'notebook-attached-after-restart.png')
  });
});
