/**
 * A watch started in a notebook's kernel appears in the Data Lake panel with what it
 * did, and its Stop button stops it in the kernel.
 */
import * as path from 'path';

import { expect, test } from '@jupyterlab/galata';

import { ARTEFACTS, openDataLake, runActiveCell } from './helpers';

test('a watch started in a kernel is listed and stopped from the panel', async ({
  page,
  tmpPath
}) => {
  await page.notebook.createNew(`${tmpPath}-watch.ipynb`);
  await page.notebook.setCell(
    0,
    'code',
    [
      'from escape_portal import watches',
      'from escape_portal.lake import Lake',
      'w = watches.watch(Lake.from_instance(), "cta:crab-2024.dl3", len, name="ui-spectra")',
      'print("watch", w.info().state)'
    ].join('\n')
  );
  expect(await runActiveCell(page)).toContain('watch running');

  await openDataLake(page);
  await page.locator('.ep-DataLake .ep-Refresh').click();
  const line = page.locator('.ep-Watch[data-watch="ui-spectra"]');
  await expect(line).toHaveAttribute('data-state', 'running');
  await expect(line).toContainText('cta:crab-2024.dl3');
  await expect(line).toContainText('0 done');
  await line.scrollIntoViewIfNeeded();
  await page.screenshot({
    path: path.join(ARTEFACTS, 'data-lake-watches.png')
  });

  await line.getByRole('button', { name: 'Stop watch ui-spectra' }).click();
  await expect(line).toHaveAttribute('data-state', 'stopped');

  await page.notebook.addCell('code', 'print("ended", w.wait(15))');
  expect(await runActiveCell(page)).toContain('ended True');
});
