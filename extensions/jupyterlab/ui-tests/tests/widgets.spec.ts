/**
 * The ipywidgets of escape_portal.widgets, rendered in JupyterLab from the widgets
 * notebook (notebooks/04-widgets.ipynb) and used as a researcher would: the lake browser
 * (search, details, make available with its progress), the VO search with its sky view,
 * and a progress widget following a request.
 */
import * as path from 'path';

import { expect, test } from '@jupyterlab/galata';

import { ARTEFACTS } from './helpers';
import { exerciseWidgets, WIDGETS_NOTEBOOK } from './widget-steps';

test('the widgets render and work in JupyterLab', async ({ page, tmpPath }) => {
  const name = path.basename(WIDGETS_NOTEBOOK);
  await page.contents.uploadFile(WIDGETS_NOTEBOOK, `${tmpPath}/${name}`);
  await page.notebook.openByPath(`${tmpPath}/${name}`);
  await page.notebook.activate(name);
  await page.notebook.run();
  await exerciseWidgets(page, 'lab');
  await expect(
    page.locator(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
    )
  ).toHaveCount(0);
  await page.screenshot({
    path: path.join(ARTEFACTS, 'widgets-lab-notebook.png'),
    fullPage: true
  });
});
