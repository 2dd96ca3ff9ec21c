/**
 * Switching the Data Lake panel to another configured Rucio instance, on a JupyterLab of
 * its own whose instances file names a second instance (the embedded lake again, under
 * another name, its password from the environment as the portal requires).
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { expect, test } from '@playwright/test';

import { ARTEFACTS, LAKE_DIR, PYTHON } from './helpers';
import { rootWith, startJupyter, stop } from './servers';

/** The embedded lake's instance settings (as `escape_portal.config` reads them). */
function embedded(): Record<string, string> {
  return JSON.parse(
    execFileSync(
      PYTHON,
      [
        '-c',
        'import dataclasses, json, os; from escape_portal.config import embedded_instance; ' +
          'c = embedded_instance(os.environ); print(json.dumps(dataclasses.asdict(c), default=str))'
      ],
      {
        env: { ...process.env, ESCAPE_PORTAL_LAKE_DIR: LAKE_DIR },
        encoding: 'utf-8'
      }
    )
  );
}

test('the Data Lake panel switches to another configured instance', async ({
  page
}) => {
  const lake = embedded();
  const root = rootWith();
  const config = path.join(root, 'instances.toml');
  fs.writeFileSync(
    config,
    [
      '[instances.lake-b]',
      `rucio_host = "${lake.rucio_host}"`,
      `auth_host = "${lake.auth_host}"`,
      'auth_type = "userpass"',
      `account = "${lake.account}"`,
      `username = "${lake.username}"`,
      `compute_site = "${lake.compute_site}"`,
      ''
    ].join('\n')
  );
  const server = await startJupyter(
    'lab',
    root,
    [
      `--LabApp.workspaces_dir=${path.join(root, '.workspaces')}`,
      `--LabApp.user_settings_dir=${path.join(root, '.settings')}`
    ],
    {
      ESCAPE_PORTAL_CONFIG: config,
      ESCAPE_PORTAL_INSTANCE: 'embedded',
      RUCIO_PASSWORD: lake.password
    }
  );
  try {
    await page.goto(`http://127.0.0.1:${server.port}/lab`);
    await page.waitForFunction(
      () =>
        (window as any).jupyterapp?.commands?.hasCommand(
          'escape-portal:open-data-lake'
        ),
      undefined,
      { timeout: 60000 }
    );
    await page.evaluate(async () => {
      const app = (window as any).jupyterapp;
      await app.restored; // else restoring the layout may close the sidebar again
      await app.commands.execute('escape-portal:open-data-lake');
    });
    const panel = page.locator('.ep-DataLake');
    await expect(panel).toBeVisible();
    await expect(panel.locator('.ep-Identity-instance')).toHaveText(
      'embedded',
      {
        timeout: 60000
      }
    );
    const choose = panel.locator('select.ep-Identity-choose');
    await expect(choose).toHaveValue('embedded');
    await choose.selectOption('lake-b');
    await expect(panel.locator('.ep-Identity-instance')).toHaveText('lake-b');
    await expect(choose).toHaveValue('lake-b');
    // The panel shows the new instance's scopes.
    await expect(
      panel.locator('.ep-Row[data-kind="scope"][data-name="cta"]')
    ).toBeVisible();
    await panel.screenshot({
      path: path.join(ARTEFACTS, 'data-lake-instances.png')
    });
  } finally {
    await stop(server);
  }
});
