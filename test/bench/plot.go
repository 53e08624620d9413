package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"path/filepath"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// throughputRows are the table rows the plot shows, in order.
var throughputRows = []string{
	"download, 1 stream(s), Gbit/s",
	"upload, 1 stream(s), Gbit/s",
	"download, 8 stream(s), Gbit/s",
	"upload, 8 stream(s), Gbit/s",
}

// throughputGoal is issue 15's throughput goal, as a share of the topology
// limit.
const throughputGoal = 0.8

// plotColors are the bars' colours, by column.
var plotColors = []color.RGBA{
	{0x9e, 0x9e, 0x9e, 0xff}, // the topology limit
	{0x1f, 0x77, 0xb4, 0xff}, // ours
	{0xff, 0x7f, 0x0e, 0xff}, // ANP's
}

// plotThroughput writes a PNG bar chart of the throughput rows of r for the
// columns named (the topology limit first; each other bar is labelled with
// its ratio to it) to file.
func plotThroughput(r *results, columns []string, file string) error {
	const (
		width, left, right = 900, 170, 150
		barHeight, gap     = 16, 14
		top                = 40
	)
	height := top + len(throughputRows)*(len(columns)*barHeight+gap) + 30
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	text := func(x, y int, c color.Color, s string) {
		d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
		d.DrawString(s)
	}
	black := color.Black

	maxV := 0.0
	for _, row := range throughputRows {
		for _, c := range columns {
			maxV = max(maxV, r.values[row][c])
		}
	}
	if maxV == 0 {
		return fmt.Errorf("no throughput figures to plot")
	}
	scale := float64(width-left-right) / maxV

	text(left, 16, black, "Throughput through each path, Gbit/s (label: ratio to the topology limit; line: issue 15's goal, 0.8x)")
	for i, c := range columns {
		x := left + i*220
		draw.Draw(img, image.Rect(x, 22, x+12, 32), image.NewUniform(plotColors[i%len(plotColors)]), image.Point{}, draw.Src)
		text(x+16, 32, black, c)
	}
	y := top
	for _, row := range throughputRows {
		text(4, y+len(columns)*barHeight/2+4, black, row[:len(row)-len(", Gbit/s")])
		limit := r.values[row][columns[0]]
		goal := left + int(throughputGoal*limit*scale)
		draw.Draw(img, image.Rect(goal, y, goal+2, y+len(columns)*barHeight), image.NewUniform(black), image.Point{}, draw.Src)
		for i, c := range columns {
			v := r.values[row][c]
			w := int(v * scale)
			draw.Draw(img, image.Rect(left, y+1, left+w, y+barHeight-1), image.NewUniform(plotColors[i%len(plotColors)]), image.Point{}, draw.Src)
			label := fmt.Sprintf("%.3g", v)
			if i > 0 && limit > 0 {
				label += fmt.Sprintf(" (%.2fx)", v/limit)
			}
			text(left+w+4, y+barHeight-4, black, label)
			y += barHeight
		}
		y += gap
	}

	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("failed to create the plot's directory: %w", err)
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("failed to create the plot: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		_ = f.Close()
		return fmt.Errorf("failed to write the plot: %w", err)
	}
	return f.Close()
}
