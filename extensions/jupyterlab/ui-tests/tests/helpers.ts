import { execFileSync } from 'child_process';
import * as path from 'path';

import { IJupyterLabPageFixture } from '@jupyterlab/galata';
import { Locator } from '@playwright/test';

/** Screenshots for people to look at (not compared): ui-tests/artefacts/. */
export const ARTEFACTS = path.resolve(__dirname, '..', 'artefacts');

export const LAKE_DIR =
  process.env.ESCAPE_PORTAL_LAKE_DIR ||
  path.resolve(__dirname, '..', '..', '..', '..', '.cache', 'test-lake');

export const PYTHON =
  process.env.ESCAPE_PORTAL_PYTHON ||
  path.resolve(__dirname, '..', '..', '..', '..', '.venv', 'bin', 'python');

/** A new dataset of three FITS files, only far from compute (PIC-DISK). */
export function freshDataset(corrupt = false): string {
  return execFileSync(
    PYTHON,
    [
      path.resolve(__dirname, '..', 'fresh_dataset.py'),
      ...(corrupt ? ['--corrupt'] : [])
    ],
    {
      env: { ...process.env, ESCAPE_PORTAL_LAKE_DIR: LAKE_DIR },
      encoding: 'utf-8'
    }
  ).trim();
}

export async function openDataLake(
  page: IJupyterLabPageFixture
): Promise<void> {
  await page.evaluate(() =>
    (window as any).jupyterapp.commands.execute('escape-portal:open-data-lake')
  );
  await page.locator('.ep-DataLake').waitFor();
}

export async function openVOSearch(
  page: IJupyterLabPageFixture
): Promise<void> {
  await page.evaluate(() =>
    (window as any).jupyterapp.commands.execute('escape-portal:open-vo-search')
  );
  await page.locator('.ep-VOSearch').waitFor();
}

/** Run the active cell of the current notebook and return its output text. */
export async function runActiveCell(
  page: Pick<IJupyterLabPageFixture, 'waitForFunction' | 'evaluate' | 'locator'>
): Promise<string> {
  // The kernel first (a new notebook starts one), then the cell, through the command
  // (not a key press), so that where the keyboard focus is does not matter.
  await page.waitForFunction(
    () => {
      const panel = (window as any).jupyterapp.shell.currentWidget;
      const context = panel?.sessionContext;
      return (
        !!context?.session?.kernel && context.kernelDisplayStatus === 'idle'
      );
    },
    undefined,
    { timeout: 120000 }
  );
  await page.evaluate(async () => {
    await (window as any).jupyterapp.commands.execute('notebook:run-cell');
  });
  await page.waitForFunction(
    () => {
      const active = document.querySelector(
        '.jp-Notebook .jp-Cell.jp-mod-active'
      );
      const prompt =
        active?.querySelector('.jp-InputPrompt')?.textContent ?? '';
      return /\[\d+\]/.test(prompt);
    },
    undefined,
    { timeout: 120000 }
  );
  const cell = page.locator('.jp-Notebook .jp-Cell.jp-mod-active');
  return (await cell.locator('.jp-OutputArea').innerText()).trim();
}

/**
 * Attach `dids` to the current notebook with the extension's command (metadata and a
 * cell binding them), run that cell, and return its output.
 */
export async function attachAndRun(
  page: Pick<
    IJupyterLabPageFixture,
    'waitForFunction' | 'evaluate' | 'locator'
  >,
  dids: string[]
): Promise<string> {
  await page.evaluate(async dids => {
    await (window as any).jupyterapp.commands.execute(
      'escape-portal:attach-to-notebook',
      { dids }
    );
  }, dids);
  return runActiveCell(page);
}

/**
 * Open the Data Lake panel and browse to `did` of scope user.escape (the scope, then a
 * search for its name), selected, its details shown.
 */
export async function browseToDataset(
  page: IJupyterLabPageFixture,
  did: string
): Promise<{ panel: Locator; list: Locator; details: Locator }> {
  const name = did.split(':')[1];
  await openDataLake(page);
  const panel = page.locator('.ep-DataLake');
  const list = page.locator('#ep-datalake-list');
  await list
    .locator('.ep-Row[data-kind="scope"][data-name="user.escape"]')
    .dblclick();
  await panel.locator('.ep-Search-input').fill(`${name}*`);
  await panel.locator('.ep-Search-input').press('Enter');
  await list.locator(`.ep-Row[data-did="${did}"]`).click();
  const details = panel.locator(`.ep-Details[data-did="${did}"]`);
  return { panel, list, details };
}
