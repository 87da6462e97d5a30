//! Line plots as PNG files: schedules and loss curves.

use std::path::Path;
use std::sync::Once;

use anyhow::{Context, Result, bail};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// One named curve.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// What to draw and how to label it.
pub struct LinePlot<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// Logarithmic y axis (loss curves, SNR); non-positive values are dropped.
    pub log_y: bool,
    pub series: Vec<Series>,
}

const WIDTH: u32 = 900;
const HEIGHT: u32 = 560;

fn register_bundled_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let font = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
        // The bundled bytes are a valid TrueType file; failure would only lose the labels.
        let _ = register_font("sans-serif", FontStyle::Normal, font);
    });
}

/// Draws `plot` into a PNG at `path`.
pub fn write_line_plot(path: &Path, plot: &LinePlot<'_>) -> Result<()> {
    write_line_plots(path, std::slice::from_ref(plot))
}

/// Draws `plots` side by side into one PNG at `path`.
pub fn write_line_plots(path: &Path, plots: &[LinePlot<'_>]) -> Result<()> {
    register_bundled_font();
    let width = WIDTH * plots.len().max(1) as u32;
    let root = BitMapBackend::new(path, (width, HEIGHT)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let areas = root.split_evenly((1, plots.len().max(1)));
        for (plot, area) in plots.iter().zip(&areas) {
            draw_plot(area, plot)?;
        }
        root.present()?;
        Ok(())
    };
    for plot in plots {
        if plot_range(plot).is_none() {
            bail!("nothing to plot in \"{}\": no finite points", plot.title);
        }
    }
    draw()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot draw {}", path.display()))
}

/// The x and y ranges of the finite points of `plot`, widened where empty.
fn plot_range(plot: &LinePlot<'_>) -> Option<(f64, f64, f64, f64)> {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    let mut any = false;
    for &(x, y) in plot.series.iter().flat_map(|s| s.points.iter()) {
        if x.is_finite() && y.is_finite() && (!plot.log_y || y > 0.0) {
            any = true;
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    if !any {
        return None;
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + y0.abs().max(1.0) * 0.1;
    }
    Some((x0, x1, y0, y1))
}

fn draw_plot<'a>(
    area: &DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>,
    plot: &LinePlot<'_>,
) -> Result<(), Box<dyn std::error::Error + 'a>> {
    let finite = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!plot.log_y || y > 0.0);
    let Some((x0, x1, y0, y1)) = plot_range(plot) else {
        return Ok(());
    };
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(plot.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(72);
    if plot.log_y {
        let mut chart = builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?;
        draw_chart(&mut chart, plot, &finite)?;
    } else {
        let pad = (y1 - y0) * 0.05;
        let mut chart = builder.build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))?;
        draw_chart(&mut chart, plot, &finite)?;
    }
    Ok(())
}

/// An axis value rounded to 6 significant digits and printed in the shortest form that reads
/// back as it: log-scale ticks are computed as powers and come out as 0.6000000000000001.
fn tick_label(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let decimals = 5 - value.abs().log10().floor() as i32;
    let scale = 10f64.powi(decimals);
    format!("{}", (value * scale).round() / scale)
}

fn draw_chart<'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    plot: &LinePlot<'_>,
    finite: &dyn Fn(&(f64, f64)) -> bool,
) -> Result<(), Box<dyn std::error::Error + 'a>>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(plot.x_label)
        .y_desc(plot.y_label)
        .label_style(("sans-serif", 14))
        .x_label_formatter(&|x| tick_label(*x))
        .y_label_formatter(&|y| tick_label(*y))
        .draw()?;
    for (i, series) in plot.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = series
            .points
            .iter()
            .copied()
            .filter(|p| finite(p))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(series.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    if plot.series.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_carry_no_float_noise() {
        assert_eq!(tick_label(0.6000000000000001), "0.6");
        assert_eq!(tick_label(0.30000000000000004), "0.3");
        assert_eq!(tick_label(1.0000000000000002e-5), "0.00001");
        assert_eq!(tick_label(2500.0000000001), "2500");
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(0.123456789), "0.123457");
        assert_eq!(tick_label(-0.2), "-0.2");
    }

    #[test]
    fn writes_a_png_with_the_requested_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.png");
        let plot = LinePlot {
            title: "test",
            x_label: "x",
            y_label: "y",
            log_y: true,
            series: vec![
                Series {
                    name: "a".into(),
                    points: (1..50).map(|i| (i as f64, 1.0 / i as f64)).collect(),
                },
                Series {
                    name: "b".into(),
                    points: vec![(1.0, 0.5), (2.0, f64::NAN), (3.0, 0.1)],
                },
            ],
        };
        write_line_plot(&path, &plot).unwrap();
        let img = image::open(&path).unwrap();
        assert_eq!((img.width(), img.height()), (WIDTH, HEIGHT));
    }

    #[test]
    fn refuses_an_empty_plot() {
        let dir = tempfile::tempdir().unwrap();
        let plot = LinePlot {
            title: "t",
            x_label: "x",
            y_label: "y",
            log_y: false,
            series: vec![],
        };
        assert!(write_line_plot(&dir.path().join("p.png"), &plot).is_err());
    }
}
