/**
 * The researcher's path: browse the lake to a dataset, make it available near compute
 * and watch it arrive, open a file of it in a notebook and run the cell that reads the
 * FITS file; search the VO and open a row linked to the lake.
 */
import * as path from 'path';

import { expect, test } from '@jupyterlab/galata';

import {
  ARTEFACTS,
  browseToDataset,
  freshDataset,
  openDataLake,
  openVOSearch,
  runActiveCell
} from './helpers';

test.describe.configure({ mode: 'serial' });

test('a 100,000-file dataset shows its first rows at once and scrolls', async ({
  page
}) => {
  await openDataLake(page);
  const list = page.locator('#ep-datalake-list');
  await list
    .locator('.ep-Row[data-kind="scope"][data-name="scale"]')
    .dblclick();
  const started = Date.now();
  await list.locator('.ep-Row[data-did="scale:files-100k"]').dblclick();
  await expect(
    list.locator('.ep-Row[data-did="scale:files-100k.000000.dat"]')
  ).toBeVisible();
  const firstRows = Date.now() - started;
  console.log(`first rows of scale:files-100k after ${firstRows} ms`);
  expect(firstRows).toBeLessThan(10000);
  // Only the rows in view are in the DOM.
  expect(await list.locator('.ep-VirtualList-row').count()).toBeLessThan(80);
  // Scrolling to the end of what is loaded reads the next page.
  for (let i = 0; i < 3; i++) {
    await list.evaluate(node => (node.scrollTop = node.scrollHeight));
    await page.waitForTimeout(300);
  }
  // The rows in view are now past the first page: later pages were read as it scrolled.
  await expect
    .poll(async () => {
      const did = await list
        .locator('.ep-Row[data-did]')
        .last()
        .getAttribute('data-did');
      return Number(/\.(\d+)\.dat$/.exec(did ?? '')?.[1] ?? 0);
    })
    .toBeGreaterThan(400);
  expect(await list.locator('.ep-VirtualList-row').count()).toBeLessThan(80);
  await page
    .locator('.ep-DataLake')
    .screenshot({ path: path.join(ARTEFACTS, 'data-lake-100k.png') });
});

test('browse to a dataset, make it available near compute, open it in a notebook', async ({
  page
}) => {
  const did = freshDataset();
  // Browse: scopes → user.escape → the dataset.
  const { panel, list, details } = await browseToDataset(page, did);
  await expect(details.locator('.ep-FileCount')).toHaveText('3');
  await expect(details.locator('.ep-Replicas')).toContainText('PIC-DISK');
  await panel.screenshot({
    path: path.join(ARTEFACTS, 'data-lake-details.png')
  });

  // Make available: the placement says where and why, then progress until available.
  await details.locator('.ep-MakeAvailable').click();
  const dialog = page.locator('.jp-Dialog');
  await expect(
    dialog.locator(`.ep-Placement[data-did="${did}"]`)
  ).toContainText('CERN-DISK');
  await dialog.screenshot({
    path: path.join(ARTEFACTS, 'make-available-placement.png')
  });
  await dialog.getByRole('button', { name: 'Make available' }).click();
  const transfer = panel.locator(
    `.ep-Transfers .ep-Transfer[data-did="${did}"]`
  );
  await expect(transfer).toBeVisible();
  await panel.screenshot({
    path: path.join(ARTEFACTS, 'make-available-progress.png')
  });
  await expect(transfer).toHaveAttribute('data-state', 'available', {
    timeout: 150000
  });
  await expect(
    page
      .locator('.jp-toast-message', { hasText: 'is available near compute' })
      .first()
  ).toBeVisible();
  await expect(details.locator('.ep-Replicas')).toContainText('CERN-DISK', {
    timeout: 30000
  });
  await page.screenshot({
    path: path.join(ARTEFACTS, 'make-available-done.png')
  });

  // Open a FITS file of it in a notebook, and run the inserted cell.
  await list.locator(`.ep-Row[data-did="${did}"]`).dblclick();
  const file = `${did}.0.fits`;
  await list.locator(`.ep-Row[data-did="${file}"]`).click();
  await panel
    .locator(`.ep-Details[data-did="${file}"] .ep-OpenInNotebook`)
    .click();
  await page.locator('.jp-NotebookPanel').waitFor();
  const cell = page.locator(
    '.jp-Notebook .jp-Cell.jp-mod-active .jp-InputArea'
  );
  await expect(cell).toContainText(`access.fits("${file}")`);
  const output = await runActiveCell(page);
  expect(output).toContain('PRIMARY');
  await page.screenshot({
    path: path.join(ARTEFACTS, 'notebook-open-fits.png')
  });

  // Attach the file: kept in the notebook's metadata, with a cell that opens it.
  await list.locator(`.ep-Row[data-did="${file}"] .ep-Row-check`).check();
  await panel
    .locator('.ep-Selection')
    .getByRole('button', { name: 'Attach' })
    .click();
  await expect
    .poll(() =>
      page.evaluate(() => {
        const widget = (window as any).jupyterapp.shell.currentWidget;
        return JSON.stringify(
          widget?.content?.model?.getMetadata('escape_portal') ?? null
        );
      })
    )
    .toContain(file);
  // The cell binds the DID through escape_portal.kernel: a local path, read in place.
  const attachedOutput = await runActiveCell(page);
  expect(attachedOutput).toContain('PosixPath(');
  expect(attachedOutput).toContain(file.slice(file.indexOf(':') + 1));
});

test('a multi-selection explains where each DID would go', async ({ page }) => {
  const errors: string[] = [];
  page.on('pageerror', error => errors.push(error.message));
  await openDataLake(page);
  const panel = page.locator('.ep-DataLake');
  const list = page.locator('#ep-datalake-list');
  await list.locator('.ep-Row[data-kind="scope"][data-name="cta"]').dblclick();
  for (const did of ['cta:crab-2024.dl3', 'cta:crab-2024.sky']) {
    await list.locator(`.ep-Row[data-did="${did}"] .ep-Row-check`).check();
  }
  await expect(panel.locator('.ep-Selection')).toContainText('2 selected');
  await panel
    .locator('.ep-Selection')
    .getByRole('button', { name: 'Make available' })
    .click();
  const dialog = page.locator('.jp-Dialog');
  await expect(dialog.locator('.ep-Placement')).toHaveCount(2);
  await expect(
    dialog.locator('.ep-Placement[data-did="cta:crab-2024.sky"]')
  ).toContainText('CERN');
  await dialog.screenshot({
    path: path.join(ARTEFACTS, 'make-available-selection.png')
  });
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await expect(dialog).toHaveCount(0);
  expect(errors).toEqual([]);
});

test('search the VO and open a row linked to the lake', async ({ page }) => {
  await openVOSearch(page);
  const panel = page.locator('.ep-VOSearch');
  await expect(panel.locator('.ep-ServiceList li')).not.toHaveCount(0);
  await panel.locator('.ep-VO-name').fill('Crab');
  await panel.getByRole('button', { name: 'Resolve' }).click();
  await expect(panel.locator('.ep-Resolved')).toContainText('RA 83.6');
  await panel.locator('.ep-VO-radius').fill('1');
  await panel.locator('.ep-VO-search').click();
  await expect(panel.locator('.ep-Statuses tbody tr').first()).toBeVisible({
    timeout: 60000
  });
  const linked = panel.locator('.ep-VORow.ep-mod-linked');
  await expect(linked.first()).toBeVisible();
  await expect(panel.locator('.ep-Sky-footprint').first()).toBeVisible();
  await panel.locator('.ep-Sky-footprint.ep-mod-linked').last().click();
  await expect(panel.locator('.ep-VORowDetails')).toBeVisible();
  await panel.screenshot({
    path: path.join(ARTEFACTS, 'vo-search-results.png')
  });
  await page
    .locator('.ep-Sky')
    .screenshot({ path: path.join(ARTEFACTS, 'vo-sky-footprint.png') });

  const did = await linked.first().getAttribute('data-did');
  expect(did).toMatch(/\.fits$/);
  await linked.first().locator('.ep-VORow-open').click();
  await page.locator('.jp-NotebookPanel').waitFor();
  await expect(
    page.locator('.jp-Notebook .jp-Cell.jp-mod-active .jp-InputArea')
  ).toContainText(`access.fits("${did}")`);
  const output = await runActiveCell(page);
  expect(output).toContain('PRIMARY');
  await page.screenshot({
    path: path.join(ARTEFACTS, 'vo-open-linked-row.png')
  });
});

test('a corrupted source ends stuck, and the panel says why', async ({
  page
}) => {
  const did = freshDataset(true);
  const { panel, details } = await browseToDataset(page, did);
  await details.locator('.ep-MakeAvailable').click();
  await page
    .locator('.jp-Dialog')
    .getByRole('button', { name: 'Make available' })
    .click();
  const transfer = panel.locator(
    `.ep-Transfers .ep-Transfer[data-did="${did}"]`
  );
  await expect(transfer).toHaveAttribute('data-state', 'stuck', {
    timeout: 150000
  });
  await expect(transfer.locator('.ep-Transfer-stuck')).toContainText(
    'checksum mismatch'
  );
  await panel.screenshot({
    path: path.join(ARTEFACTS, 'make-available-stuck.png')
  });
});
