/**
 * The extension loads, both panels render against the server extension, settings and
 * commands are there, and the panels read in the light and the dark theme.
 */
import * as path from 'path';

import { expect, test } from '@jupyterlab/galata';

import { ARTEFACTS, openDataLake, openVOSearch } from './helpers';

test.describe('ESCAPE Portal panels', () => {
  test('the Data Lake panel shows who you are and the scopes', async ({
    page
  }) => {
    await openDataLake(page);
    const panel = page.locator('.ep-DataLake');
    await expect(panel.locator('.ep-Identity-instance')).toHaveText(
      'embedded-alice'
    );
    await expect(panel.locator('.ep-Identity-account')).toContainText('alice');
    await expect(
      panel.locator('.ep-Row[data-kind="scope"][data-name="cta"]')
    ).toBeVisible();
    await panel.screenshot({
      path: path.join(ARTEFACTS, 'data-lake-scopes.png')
    });
  });

  test('commands are in the palette', async ({ page }) => {
    await page.keyboard.press('Control+Shift+C');
    await page.locator('.lm-CommandPalette-input').fill('ESCAPE');
    await expect(
      page.locator('.lm-CommandPalette-item', {
        hasText: 'Open the Data Lake panel'
      })
    ).toBeVisible();
    await expect(
      page.locator('.lm-CommandPalette-item', {
        hasText: 'Make Data Available Near Compute'
      })
    ).toBeVisible();
    await page.screenshot({
      path: path.join(ARTEFACTS, 'command-palette.png')
    });
    await page.keyboard.press('Escape');
  });

  test('the keyboard opens the Data Lake panel and walks its list', async ({
    page
  }) => {
    await page.keyboard.press('Control+Alt+L');
    const list = page.locator('#ep-datalake-list');
    await expect(
      list.locator('.ep-Row[data-kind="scope"]').first()
    ).toBeVisible();
    await list.focus();
    await page.keyboard.press('ArrowDown'); // km3net after cta
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('Enter'); // into cta
    await expect(page.locator('.ep-Crumb.ep-mod-current')).toHaveText('cta');
    await expect(
      list.locator('.ep-Row[data-did="cta:crab-2024.dl3"]')
    ).toBeVisible();
  });

  test('the settings have titles in the settings editor', async ({ page }) => {
    await page.evaluate(() =>
      (window as any).jupyterapp.commands.execute('settingeditor:open', {
        query: 'ESCAPE Portal'
      })
    );
    await expect(
      page.getByText('Progress interval (seconds)').first()
    ).toBeVisible({ timeout: 30000 });
    await page.screenshot({ path: path.join(ARTEFACTS, 'settings.png') });
  });

  test('the VO Search panel lists the registry services', async ({ page }) => {
    await openVOSearch(page);
    const panel = page.locator('.ep-VOSearch');
    await expect(panel.locator('.ep-ServiceList li')).not.toHaveCount(0);
    await panel.screenshot({
      path: path.join(ARTEFACTS, 'vo-search-form.png')
    });
  });

  test('the panels follow the dark theme', async ({ page }) => {
    await page.theme.setDarkTheme();
    await openDataLake(page);
    await page
      .locator('.ep-Row[data-kind="scope"][data-name="scale"]')
      .dblclick();
    await page.locator('.ep-Row[data-did="scale:files-100k"]').click();
    await expect(page.locator('.ep-Details .ep-FileCount')).toHaveText(
      '100,000'
    );
    await page.screenshot({
      path: path.join(ARTEFACTS, 'data-lake-dark.png')
    });
    await openVOSearch(page);
    const vo = page.locator('.ep-VOSearch');
    await vo.locator('.ep-VO-ra').fill('83.6331');
    await vo.locator('.ep-VO-dec').fill('22.0145');
    await vo.locator('.ep-VO-search').click();
    await expect(vo.locator('.ep-Sky-footprint').first()).toBeVisible();
    await vo.locator('.ep-Sky').scrollIntoViewIfNeeded();
    await page.screenshot({
      path: path.join(ARTEFACTS, 'vo-search-dark.png')
    });
    await page.theme.setLightTheme();
  });
});
