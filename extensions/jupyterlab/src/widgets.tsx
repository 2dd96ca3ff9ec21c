/** The side panels as Lumino widgets. */
import * as React from 'react';
import { ReactWidget } from '@jupyterlab/ui-components';

import { DataLakePanel } from './components/DataLakePanel';
import { VOSearchPanel } from './components/VOSearchPanel';
import { IPortalContext } from './context';
import { lakeIcon, skyIcon } from './icons';

export class DataLakeWidget extends ReactWidget {
  constructor(private readonly context: IPortalContext) {
    super();
    this.id = 'escape-portal-data-lake';
    this.addClass('ep-Widget');
    this.title.icon = lakeIcon;
    this.title.caption = 'Data Lake (ESCAPE Portal)';
  }

  render(): JSX.Element {
    return <DataLakePanel context={this.context} />;
  }
}

export class VOSearchWidget extends ReactWidget {
  constructor(private readonly context: IPortalContext) {
    super();
    this.id = 'escape-portal-vo-search';
    this.addClass('ep-Widget');
    this.title.icon = skyIcon;
    this.title.caption = 'VO Search (ESCAPE Portal)';
  }

  render(): JSX.Element {
    return <VOSearchPanel context={this.context} />;
  }
}
