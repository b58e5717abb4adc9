import { LabIcon } from '@jupyterlab/ui-components';

import svgstr from '../style/icons/nbtrack.svg';

/** The panel's tab icon: a notebook page with a metric curve. */
export const nbtrackIcon = new LabIcon({ name: 'nbtrack:runs', svgstr });
