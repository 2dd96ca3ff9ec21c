/**
 * Attached DIDs are bound again after a restart asked for from the Kernel menu.
 *
 * This one runs against a JupyterLab of its own (a free loopback port, the project's
 * venv with the extension, the embedded lake), not Galata's test server: in Galata's
 * harness nothing runs in a kernel after a menu restart, with or without this extension.
 */
import * as fs from 'fs';
import * as path from 'path';

import { expect, test } from '@playwright/test';

import { ARTEFACTS, attachAndRun, runActiveCell } from './helpers';
import { rootWith, startJupyter, stop } from './servers';

// A file of the sample lake that is near compute from the start (CERN-DISK).
const FILE = 'cta:crab-2024.sky.0002.fits';
const VARIABLE = 'crab_2024_sky_0002';
const NOTEBOOK = 'attached.ipynb';

test('attached DIDs are bound again after a restart from the Kernel menu', async ({
  page
}) => {
  const root = rootWith();
  fs.writeFileSync(
    path.join(root, NOTEBOOK),
    JSON.stringify({
      cells: [
        {
          cell_type: 'code',
          metadata: {},
          source: '',
          outputs: [],
          execution_count: null
        }
      ],
      metadata: {
        kernelspec: { name: 'python3', display_name: 'Python 3 (ipykernel)' }
      },
      nbformat: 4,
      nbformat_minor: 5
    })
  );
  const server = await startJupyter('lab', root, [
    `--LabApp.workspaces_dir=${path.join(root, '.workspaces')}`,
    `--LabApp.user_settings_dir=${path.join(root, '.settings')}`
  ]);
  const port = server.port;
  try {
    await page.goto(`http://127.0.0.1:${port}/lab/tree/${NOTEBOOK}`);
    await page.locator('.jp-NotebookPanel').waitFor({ timeout: 60000 });
    expect(await attachAndRun(page, [FILE])).toContain('PosixPath(');

    // Kernel › Restart Kernel…, confirmed.
    await page.evaluate(() => {
      void (window as any).jupyterapp.commands.execute(
        'notebook:restart-kernel'
      );
    });
    await page.locator('.jp-Dialog .jp-mod-accept').click();
    await expect(page.locator('.jp-Dialog')).toHaveCount(0);

    // A new cell, in the restarted kernel, finds the variable bound again.
    await page.evaluate(async code => {
      const app = (window as any).jupyterapp;
      await app.commands.execute('notebook:insert-cell-below');
      app.shell.currentWidget.content.activeCell.model.sharedModel.setSource(
        code
      );
    }, `print(type(${VARIABLE}).__name__, ${VARIABLE}.name)`);
    const after = await runActiveCell(page);
    expect(after).not.toContain('NameError');
    expect(after).toContain('crab-2024.sky.0002.fits');
    // It ran in the restarted kernel: its first counted execution.
    await expect(
      page.locator('.jp-Notebook .jp-Cell.jp-mod-active .jp-InputPrompt')
    ).toContainText('[1]');
    await page.screenshot({
      path: path.join(ARTEFACTS, 'notebook-attached-after-menu-restart.png')
    });
  } finally {
    await stop(server);
  }
});
