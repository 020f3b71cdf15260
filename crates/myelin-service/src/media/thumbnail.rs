//! Thumbnails: the standard sizes requests are snapped to, and the pure image work (header
//! check, decode within limits, EXIF orientation, resize, encode). No I/O: the caller reads the
//! blob and runs this off the async threads.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, imageops::FilterType};

/// How a thumbnail fits its box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// Fill the box exactly, cutting what sticks out.
    Crop,
    /// Fit inside the box, keeping the aspect ratio.
    Scale,
}

impl Method {
    pub fn parse(s: Option<&str>) -> Option<Self> {
        match s {
            None | Some("scale") => Some(Self::Scale),
            Some("crop") => Some(Self::Crop),
            Some(_) => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crop => "crop",
            Self::Scale => "scale",
        }
    }
}

/// A standard thumbnail size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Size {
    pub width: u32,
    pub height: u32,
    pub method: Method,
}

/// The sizes made (what Element Web, Element X and admin UIs ask for): any request is served
/// from one of them, so a media has at most this many thumbnails on disk.
pub const SIZES: [Size; 5] = [
    Size { width: 32, height: 32, method: Method::Crop },
    Size { width: 96, height: 96, method: Method::Crop },
    Size { width: 320, height: 240, method: Method::Scale },
    Size { width: 640, height: 480, method: Method::Scale },
    Size { width: 800, height: 600, method: Method::Scale },
];

/// The standard size serving a request: the smallest of its method at least as big as asked,
/// else the smallest scaled one that is, else the biggest.
pub fn snap(width: u32, height: u32, method: Method) -> Size {
    let covers = |s: &&Size| s.width >= width && s.height >= height;
    SIZES
        .iter()
        .filter(|s| s.method == method)
        .find(covers)
        .or_else(|| SIZES.iter().filter(|s| s.method == Method::Scale).find(covers))
        .copied()
        .unwrap_or(SIZES[SIZES.len() - 1])
}

/// A made thumbnail.
#[derive(Debug)]
pub struct Thumbnail {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

/// What making a thumbnail came to.
#[derive(Debug)]
pub enum Outcome {
    Made(Thumbnail),
    /// The source is no bigger than the size: it is its own thumbnail (never upscaled), of
    /// this type (what its bytes are, whatever the uploader said).
    Original(&'static str),
    /// Not an image this server thumbnails, or one too big to decode safely.
    Refused(String),
}

/// Makes the thumbnail of `data` at `size`, refusing images of more than `max_pixels` from their
/// header, before anything is decoded.
pub fn make(data: &[u8], size: Size, max_pixels: u64) -> Outcome {
    match try_make(data, size, max_pixels) {
        Ok(outcome) => outcome,
        Err(err) => Outcome::Refused(err.to_string()),
    }
}

/// The type of an image whose bytes are PNG, JPEG, GIF or WebP (what a thumbnail may be), read
/// from the bytes themselves.
pub fn image_type(data: &[u8]) -> Option<&'static str> {
    match image::guess_format(data).ok()? {
        ImageFormat::Png => Some("image/png"),
        ImageFormat::Jpeg => Some("image/jpeg"),
        ImageFormat::Gif => Some("image/gif"),
        ImageFormat::WebP => Some("image/webp"),
        _ => None,
    }
}

fn reader(data: &[u8]) -> image::ImageResult<ImageReader<Cursor<&[u8]>>> {
    ImageReader::new(Cursor::new(data)).with_guessed_format().map_err(image::ImageError::IoError)
}

fn try_make(data: &[u8], size: Size, max_pixels: u64) -> image::ImageResult<Outcome> {
    let format = reader(data)?.format();
    let (output, source_type) = match format {
        Some(ImageFormat::Jpeg) => (ImageFormat::Jpeg, "image/jpeg"),
        Some(ImageFormat::WebP) => (ImageFormat::Jpeg, "image/webp"),
        Some(ImageFormat::Png) => (ImageFormat::Png, "image/png"),
        Some(ImageFormat::Gif) => (ImageFormat::Png, "image/gif"),
        _ => return Ok(Outcome::Refused("not an image format thumbnails are made of".into())),
    };
    let (width, height) = reader(data)?.into_dimensions()?;
    if u64::from(width) * u64::from(height) > max_pixels {
        return Ok(Outcome::Refused(format!("{width}×{height} is more pixels than thumbnails are made of")));
    }
    let mut reader = reader(data)?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    reader.limits(limits);
    let mut decoder = reader.into_decoder()?;
    let orientation = decoder.orientation()?;
    let mut image = DynamicImage::from_decoder(decoder)?;
    image.apply_orientation(orientation);
    let (width, height) = (image.width(), image.height());
    if width <= size.width && height <= size.height {
        return Ok(Outcome::Original(source_type));
    }
    let thumbnail = match size.method {
        // Never upscaled: a side already shorter than the box stays as it is.
        Method::Crop => image.resize_to_fill(size.width.min(width), size.height.min(height), FilterType::CatmullRom),
        Method::Scale => image.resize(size.width, size.height, FilterType::CatmullRom),
    };
    let mut bytes = Vec::new();
    let content_type = if output == ImageFormat::Jpeg {
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 80);
        DynamicImage::ImageRgb8(thumbnail.to_rgb8()).write_with_encoder(encoder)?;
        "image/jpeg"
    } else {
        thumbnail.write_with_encoder(image::codecs::png::PngEncoder::new(&mut bytes))?;
        "image/png"
    };
    Ok(Outcome::Made(Thumbnail { bytes, content_type, width: thumbnail.width(), height: thumbnail.height() }))
}

#[cfg(test)]
mod tests {
    use image::{DynamicImage, ImageEncoder, Rgb, RgbImage};

    use super::{Method, Outcome, SIZES, Size, make, snap};

    fn picture(width: u32, height: u32) -> RgbImage {
        // Left half red, right half blue: orientation shows.
        RgbImage::from_fn(width, height, |x, _| if x < width / 2 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) })
    }

    fn png(image: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(image.clone())
            .write_with_encoder(image::codecs::png::PngEncoder::new(&mut out))
            .expect("encode");
        out
    }

    fn made(outcome: Outcome) -> super::Thumbnail {
        match outcome {
            Outcome::Made(t) => t,
            other => panic!("expected a thumbnail, got {other:?}"),
        }
    }

    fn decoded(bytes: &[u8]) -> DynamicImage {
        image::load_from_memory(bytes).expect("a readable thumbnail")
    }

    #[test]
    fn requests_snap_to_a_few_standard_sizes() {
        let size = |w, h, m| Size { width: w, height: h, method: m };
        assert_eq!(snap(32, 32, Method::Crop), size(32, 32, Method::Crop));
        assert_eq!(snap(40, 40, Method::Crop), size(96, 96, Method::Crop));
        assert_eq!(snap(240, 240, Method::Crop), size(320, 240, Method::Scale), "no crop size big enough");
        assert_eq!(snap(1, 1, Method::Scale), size(320, 240, Method::Scale));
        assert_eq!(snap(800, 600, Method::Scale), size(800, 600, Method::Scale));
        assert_eq!(snap(4000, 4000, Method::Scale), size(800, 600, Method::Scale), "never bigger than the biggest");
        // Random requests land on at most the five sizes.
        let mut seen = std::collections::HashSet::new();
        for w in (1..2000).step_by(37) {
            for h in (1..2000).step_by(53) {
                for m in [Method::Crop, Method::Scale] {
                    seen.insert(snap(w, h, m));
                }
            }
        }
        assert!(seen.len() <= SIZES.len(), "{seen:?}");
    }

    #[test]
    fn crops_are_exact_scales_keep_the_aspect_and_nothing_is_upscaled() {
        let source = png(&picture(1000, 500));
        let crop = made(make(&source, snap(96, 96, Method::Crop), 32_000_000));
        assert_eq!((crop.width, crop.height, crop.content_type), (96, 96, "image/png"));
        assert_eq!(decoded(&crop.bytes).width(), 96);
        let scale = made(make(&source, snap(320, 240, Method::Scale), 32_000_000));
        assert_eq!((scale.width, scale.height), (320, 160), "fits the box, aspect kept");
        // Narrower than the crop box: the short side stays, nothing is stretched.
        let narrow = png(&picture(50, 300));
        let crop = made(make(&narrow, snap(96, 96, Method::Crop), 32_000_000));
        assert_eq!((crop.width, crop.height), (50, 96));
        // Smaller than the box: the original serves.
        let small = png(&picture(20, 20));
        assert!(matches!(make(&small, snap(96, 96, Method::Crop), 32_000_000), Outcome::Original("image/png")));
    }

    #[test]
    fn jpeg_sources_give_jpeg_and_exif_orientation_is_applied() {
        // 800×400, left red / right blue, stored with EXIF orientation 6 (rotate 90° clockwise):
        // shown upright it is 400×800 with red on top.
        let mut jpeg = Vec::new();
        let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95);
        let mut exif = b"II\x2a\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00".to_vec();
        exif.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
        encoder.set_exif_metadata(exif).expect("exif");
        let pixels = picture(800, 400);
        encoder.write_image(pixels.as_raw(), 800, 400, image::ExtendedColorType::Rgb8).expect("encode");
        let thumb = made(make(&jpeg, snap(96, 96, Method::Crop), 32_000_000));
        assert_eq!(thumb.content_type, "image/jpeg");
        let upright = made(make(&jpeg, snap(32, 32, Method::Scale), 32_000_000));
        let image = decoded(&upright.bytes).to_rgb8();
        assert_eq!((image.width(), image.height()), (120, 240), "rotated upright, then fitted to 320×240");
        let top = image.get_pixel(image.width() / 2, 2);
        let bottom = image.get_pixel(image.width() / 2, image.height() - 3);
        assert!(top[0] > 200 && top[2] < 60, "red on top: {top:?}");
        assert!(bottom[2] > 200 && bottom[0] < 60, "blue below: {bottom:?}");
    }

    #[test]
    fn oversized_and_foreign_images_are_refused_before_decoding() {
        // A PNG header claiming 60 000 × 1 000 pixels (60 Mpx) with no pixel data behind it.
        let mut huge = png(&picture(8, 8));
        huge[16..20].copy_from_slice(&60_000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&1_000u32.to_be_bytes());
        assert!(matches!(make(&huge, snap(96, 96, Method::Crop), 32_000_000), Outcome::Refused(_)));
        let real = png(&picture(100, 100));
        assert!(matches!(make(&real, snap(32, 32, Method::Crop), 5_000), Outcome::Refused(_)), "10 000 px > 5 000");
        assert!(matches!(make(&real, snap(32, 32, Method::Crop), 10_000), Outcome::Made(_)));
        assert!(matches!(make(b"<svg></svg>", snap(96, 96, Method::Crop), 32_000_000), Outcome::Refused(_)));
        assert!(matches!(make(b"", snap(96, 96, Method::Crop), 32_000_000), Outcome::Refused(_)));
    }
}
