/**
 * Steps shared by the widget tests in JupyterLab, Notebook 7 and Voila: each page shows
 * the outputs of notebooks/04-widgets.ipynb; these use the widgets and save screenshots.
 */
import * as path from 'path';

import { expect, Page } from '@playwright/test';

import { ARTEFACTS } from './helpers';

export const WIDGETS_NOTEBOOK = path.resolve(
  __dirname,
  '..',
  '..',
  '..',
  '..',
  'notebooks',
  '04-widgets.ipynb'
);

/** A dataset of the sample lake that is near compute from the start (CERN-DISK). */
const DATASET = 'cta:crab-2024.sky';

export async function exerciseWidgets(
  page: Page,
  where: string
): Promise<void> {
  // The lake browser: the search of the notebook's cell lists the Crab datasets.
  const browser = page.locator('.escape-portal-lake-browser');
  await expect(browser).toBeVisible({ timeout: 60000 });
  const listing = browser.locator('.escape-portal-listing select');
  const label = `${DATASET}  [dataset]`;
  await expect(listing.locator('option', { hasText: label })).toHaveCount(1, {
    timeout: 60000
  });
  await listing.selectOption({ label });
  const details = browser.locator('.escape-portal-details');
  await expect(details).toContainText('CERN-DISK', { timeout: 60000 });
  await browser.locator('button.escape-portal-make-available').click();
  const progress = browser.locator(
    '.escape-portal-requests .escape-portal-progress'
  );
  await expect(progress).toContainText('available', { timeout: 120000 });
  await browser.screenshot({
    path: path.join(ARTEFACTS, `widgets-${where}-lake-browser.png`)
  });

  // The VO search: an object name, resolved by the lake's resolver; linked rows on the sky.
  const vo = page.locator('.escape-portal-vo-search');
  await expect(vo).toBeVisible();
  await vo.locator('.escape-portal-vo-name input').fill('Crab');
  await vo.locator('button.escape-portal-vo-search-button').click();
  await expect(vo.locator('.escape-portal-vo-sky svg')).toBeVisible({
    timeout: 90000
  });
  await expect(vo.locator('.escape-portal-vo-results')).toContainText('crab', {
    ignoreCase: true
  });
  await vo.screenshot({
    path: path.join(ARTEFACTS, `widgets-${where}-vo-search.png`)
  });

  // The progress widget of the notebook's last cells: the request reached available.
  const standalone = page
    .locator('.escape-portal-progress')
    .filter({ hasNot: page.locator('.escape-portal-requests') })
    .last();
  await expect(standalone).toContainText('available', { timeout: 120000 });
  await standalone.screenshot({
    path: path.join(ARTEFACTS, `widgets-${where}-progress.png`)
  });
}
